//! Generates the PDF lab reports in `app/tests/fixtures/lab_reports/`, each with a real text
//! layer (builtin PDF fonts, no font file), for the document analysis tests
//! (`app/tests/lab_reports.rs`). Every patient, clinic and clinician is invented.
//!
//! ```text
//! cargo run -p fertivision --example make_lab_fixtures
//! ```
//!
//! The values each report states are listed in `expected.json` next to the PDFs; change both
//! together. The bytes differ from run to run (printpdf writes random document ids), the
//! text does not.

use std::path::{Path, PathBuf};

use printpdf::{
    BuiltinFont, Mm, Op, PdfDocument, PdfFontHandle, PdfPage, PdfSaveOptions, Point, Pt, TextItem,
};

/// One line of a report.
enum Row {
    /// A heading in the bold face, larger.
    Heading(&'static str),
    /// A line of text from the left margin.
    Text(&'static str),
    /// Table cells placed at their own x position (mm), as report generators do.
    Cells(&'static [(f32, &'static str)]),
    /// Vertical space.
    Blank,
}

use Row::{Blank, Cells, Heading, Text};

/// A report: its file name, document title, typeface and lines.
struct Fixture {
    file: &'static str,
    title: &'static str,
    /// Regular face; headings use the matching bold face.
    font: BuiltinFont,
    rows: &'static [Row],
}

const FIXTURES: &[Fixture] = &[
    Fixture {
        file: "hormone_panel_day3.pdf",
        title: "Day 3 hormone panel",
        font: BuiltinFont::Helvetica,
        rows: &[
            Heading("Northfield Reproductive Laboratory (fictitious)"),
            Text("Day 3 hormone panel"),
            Text(
                "Patient: Anna Fixture (fictitious)    MRN: MR-FX000001    Sample: serum, cycle day 3",
            ),
            Text("Collected: 2024-03-05 08:10    Reported: 2024-03-05 16:40"),
            Blank,
            Cells(&[
                (20.0, "Gonadotropins"),
                (80.0, "Result (IU/L)"),
                (125.0, "Reference (follicular phase)"),
            ]),
            Cells(&[(20.0, "FSH"), (80.0, "6.8"), (125.0, "3.5 - 12.5")]),
            Cells(&[(20.0, "LH"), (80.0, "5.4"), (125.0, "2.4 - 12.6")]),
            Blank,
            Heading("Other hormones"),
            Cells(&[
                (20.0, "Test"),
                (80.0, "Result"),
                (105.0, "Unit"),
                (125.0, "Reference"),
            ]),
            Cells(&[
                (20.0, "Estradiol (E2)"),
                (80.0, "38"),
                (105.0, "pg/mL"),
                (125.0, "12.5 - 166"),
            ]),
            Cells(&[
                (20.0, "Prolactin"),
                (80.0, "14.2"),
                (105.0, "ng/mL"),
                (125.0, "4.8 - 23.3"),
            ]),
            Cells(&[
                (20.0, "TSH"),
                (80.0, "1.9"),
                (105.0, "mIU/L"),
                (125.0, "0.27 - 4.20"),
            ]),
            Blank,
            Text("Validated by: R. Example, clinical scientist (fictitious)"),
        ],
    },
    Fixture {
        file: "semen_analysis_who2021.pdf",
        title: "Semen analysis",
        font: BuiltinFont::Courier,
        rows: &[
            Heading("RIVERSIDE ANDROLOGY LABORATORY (FICTITIOUS)"),
            Text("Semen analysis - WHO laboratory manual, 6th edition (2021)"),
            Text("Patient: Tomas Fixture (fictitious)   MRN: MR-FX000002"),
            Text("Abstinence: 3 days   Collected: 2024-04-11 09:05   Analysed: 09:40"),
            Blank,
            Text("Parameter                          Result   Lower reference limit"),
            Text("Semen volume (mL)                  2.8      1.4"),
            Text("Sperm concentration (10^6/mL)      12       16"),
            Text("Total sperm number (10^6/ejac.)    33.6     39"),
            Text("Total motility (PR+NP, %)          48       42"),
            Text("Progressive motility (PR, %)       35       30"),
            Text("Non-progressive motility (NP, %)   13       -"),
            Text("Immotile spermatozoa (IM, %)       52       -"),
            Text("Vitality (live, %)                 70       54"),
            Text("Normal forms (%)                   3        4"),
            Text("pH                                 7.6      7.2"),
            Blank,
            Text("Comment: mild oligozoospermia and teratozoospermia. Repeat in 3 months."),
        ],
    },
    Fixture {
        file: "ultrasound_follicle_scan.pdf",
        title: "Transvaginal ultrasound",
        font: BuiltinFont::Helvetica,
        rows: &[
            Heading("Harbour Fertility Imaging (fictitious)"),
            Text("Transvaginal ultrasound: antral follicle count"),
            Text("Patient: Lena Fixture (fictitious)    MRN: MR-FX000003    Cycle day 3"),
            Blank,
            Text("Uterus: anteverted, 78 x 45 x 40 mm, regular outline."),
            Text("Endometrial thickness: 0.62 cm, homogeneous."),
            Text("Right ovary: 28 x 19 x 17 mm, 4 antral follicles of 2-9 mm."),
            Text("Left ovary: 25 x 18 x 15 mm, 3 antral follicles of 2-9 mm."),
            Text("Antral follicle count: 7 (R 4, L 3)"),
            Text("No free fluid in the pouch of Douglas."),
            Blank,
            Text("Impression: reduced ovarian reserve; thin endometrium for the cycle day."),
        ],
    },
    Fixture {
        file: "si_units_panel.pdf",
        title: "Fertility work-up, SI units",
        font: BuiltinFont::Helvetica,
        rows: &[
            Heading("Klinikum Nordstadt Laboratory Medicine (fictitious)"),
            Text("Fertility work-up, female partner. Results in SI units."),
            Text(
                "Patient: Jana Fixture (fictitious)    MRN: MR-FX000004    Sample date: 2024-01-22",
            ),
            Blank,
            Cells(&[
                (20.0, "Analyte"),
                (85.0, "Result"),
                (105.0, "Unit"),
                (125.0, "Reference interval"),
            ]),
            Cells(&[
                (20.0, "Anti-Müllerian hormone (AMH)"),
                (85.0, "15.7"),
                (105.0, "pmol/L"),
                (125.0, "7.1 - 48.6"),
            ]),
            Cells(&[
                (20.0, "Oestradiol"),
                (85.0, "180"),
                (105.0, "pmol/L"),
                (125.0, "98 - 571 (follicular)"),
            ]),
            Cells(&[
                (20.0, "Progesterone (day 21)"),
                (85.0, "38.2"),
                (105.0, "nmol/L"),
                (125.0, "> 30 suggests ovulation"),
            ]),
            Cells(&[
                (20.0, "Prolactin"),
                (85.0, "320"),
                (105.0, "mIU/L"),
                (125.0, "102 - 496"),
            ]),
            Cells(&[
                (20.0, "FSH"),
                (85.0, "7.1"),
                (105.0, "IU/L"),
                (125.0, "3.5 - 12.5"),
            ]),
            Cells(&[
                (20.0, "TSH"),
                (85.0, "2.3"),
                (105.0, "mIU/L"),
                (125.0, "0.27 - 4.2"),
            ]),
        ],
    },
    Fixture {
        file: "reference_ranges_inline.pdf",
        title: "Endocrine profile",
        font: BuiltinFont::Courier,
        rows: &[
            Heading("WESTGATE CLINICAL LABORATORIES (FICTITIOUS)"),
            Text("Endocrine profile"),
            Text("Patient: Priya Fixture (fictitious)  MRN: MR-FX000005  DOB: 1986-07-19"),
            Text("Specimen: serum   Collected: 2024-02-14 07:55"),
            Blank,
            Text("FSH            11.4 IU/L      (3.5-12.5)"),
            Text("LH             6.1 IU/L       (2.4-12.6)"),
            Text("AMH            0.4 ng/mL      (1.0-4.0)      L"),
            Text("Estradiol      52 pg/mL       (27-122)"),
            Text("Progesterone   0.9 ng/mL      (0.2-1.5 follicular)"),
            Text("TSH            4.9 mIU/L      (0.4-4.0)      H"),
            Text("Prolactin      18 ng/mL       (4.8-23.3)"),
            Blank,
            Text("L = below the reference interval, H = above the reference interval."),
        ],
    },
    Fixture {
        file: "decimal_comma_panel.pdf",
        title: "Profilo ormonale",
        font: BuiltinFont::Helvetica,
        rows: &[
            Heading("Laboratorio Analisi Fixture (fictitious), Bologna"),
            Text("Hormone profile / Profilo ormonale"),
            Text("Patient: Giulia Fixture (fictitious)    MRN: MR-FX000006    Date: 03/10/2024"),
            Blank,
            Text("AMH: 0,8 ng/ml    (v.n. 1,0 - 4,0)"),
            Text("FSH: 9,4 mUI/ml    (follicular 3,5 - 12,5)"),
            Text("LH: 4,1 mUI/ml    (follicular 2,4 - 12,6)"),
            Text("Estradiol (E2): 41,5 pg/ml    (follicular 12,5 - 166)"),
            Text("Progesterone: 0,6 ng/ml"),
            Text("TSH: 1,25 µUI/ml    (0,27 - 4,20)"),
            Text("Prolactin: 12,6 ng/ml    (4,8 - 23,3)"),
        ],
    },
    Fixture {
        file: "ivf_workup_summary.pdf",
        title: "Couple work-up summary",
        font: BuiltinFont::TimesRoman,
        rows: &[
            Heading("Oakridge IVF Centre (fictitious)"),
            Text("Couple work-up summary"),
            Blank,
            Text("Female partner: Sara Fixture (fictitious), 34 years, MRN MR-FX000007"),
            Text("Day 3 bloods: FSH 5.9 IU/L, LH 4.8 IU/L, E2 35 pg/mL."),
            Text("Ovarian reserve: AMH 4.6 ng/mL; AFC right 14, left 13 (total 27)."),
            Text("Endometrium 9 mm, trilaminar."),
            Blank,
            Text("Male partner: Mark Fixture (fictitious), 36 years, MRN MR-FX000008"),
            Text(
                "Semen: sperm concentration 48 million/mL, progressive motility 41 %, normal forms 6 %.",
            ),
            Blank,
            Text("Plan: antagonist protocol with a low gonadotropin dose given the high reserve;"),
            Text("monitor for OHSS."),
        ],
    },
];

const PAGE_WIDTH: Mm = Mm(210.0);
const PAGE_HEIGHT: Mm = Mm(297.0);
const LEFT: f32 = 20.0;
const TOP: f32 = 272.0;
const LINE: f32 = 6.0;

fn bold(font: BuiltinFont) -> BuiltinFont {
    match font {
        BuiltinFont::Courier => BuiltinFont::CourierBold,
        BuiltinFont::TimesRoman => BuiltinFont::TimesBold,
        _ => BuiltinFont::HelveticaBold,
    }
}

/// One text object per piece of text, each positioned absolutely.
fn text_ops(ops: &mut Vec<Op>, font: BuiltinFont, size: f32, x: f32, y: f32, text: &str) {
    ops.extend([
        Op::StartTextSection,
        Op::SetTextCursor {
            pos: Point::new(Mm(x), Mm(y)),
        },
        Op::SetFont {
            font: PdfFontHandle::Builtin(font),
            size: Pt(size),
        },
        Op::ShowText {
            items: vec![TextItem::Text(text.to_owned())],
        },
        Op::EndTextSection,
    ]);
}

fn render(fixture: &Fixture) -> Vec<u8> {
    let mut ops = Vec::new();
    let mut y = TOP;
    for row in fixture.rows {
        match row {
            Heading(text) => text_ops(&mut ops, bold(fixture.font), 12.0, LEFT, y, text),
            Text(text) => text_ops(&mut ops, fixture.font, 9.0, LEFT, y, text),
            Cells(cells) => {
                for (x, text) in cells.iter() {
                    text_ops(&mut ops, fixture.font, 9.0, *x, y, text);
                }
            }
            Blank => {}
        }
        y -= LINE;
    }
    let page = PdfPage::new(PAGE_WIDTH, PAGE_HEIGHT, ops);
    PdfDocument::new(fixture.title)
        .with_pages(vec![page])
        .save(&PdfSaveOptions::default(), &mut Vec::new())
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lab_reports")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = fixtures_dir();
    std::fs::create_dir_all(&dir)?;
    for fixture in FIXTURES {
        let bytes = render(fixture);
        // The point of these fixtures is their text layer: check it reads back.
        let text = pdf_extract::extract_text_from_mem(&bytes)?;
        if text.trim().is_empty() {
            return Err(format!("{}: no text layer in the generated PDF", fixture.file).into());
        }
        let path = dir.join(fixture.file);
        std::fs::write(&path, &bytes)?;
        println!("wrote {} ({} bytes)", path.display(), bytes.len());
    }
    Ok(())
}
