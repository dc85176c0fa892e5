//! The store suite: every test runs on SQLite and on PostgreSQL.

mod common;

use chrono::NaiveDate;
use fertivision::domain::AnalysisKind;
use fertivision::store::{NewAnalysis, NewDocument, NewPatient, PatientPatch, Store, StoreError};
use serde_json::json;
use uuid::Uuid;

fn patient(mrn: &str) -> NewPatient {
    NewPatient {
        mrn: mrn.to_owned(),
        name: "Test Patient".to_owned(),
        date_of_birth: NaiveDate::from_ymd_opt(1990, 5, 17).unwrap(),
        sex: "female".to_owned(),
        email: Some("patient@example.org".to_owned()),
        phone: Some("+1 555 0100".to_owned()),
    }
}

fn semen(concentration: f64) -> (serde_json::Value, serde_json::Value) {
    let input = json!({"concentration": concentration, "progressive_motility": 40.0, "normal_morphology": 5.0});
    let result = json!({"classification": "Normozoospermia", "normal": true, "findings": []});
    (input, result)
}

fn document(patient_id: Uuid) -> NewDocument {
    let id = Uuid::now_v7();
    NewDocument {
        id,
        patient_id,
        document_type: "lab_report".to_owned(),
        filename: "report.pdf".to_owned(),
        content_type: "application/pdf".to_owned(),
        size_bytes: 1234,
        sha256: "00".repeat(32),
        object_key: format!("documents/{patient_id}/{id}"),
    }
}

async fn add_semen(
    store: &Store,
    patient_id: Uuid,
    concentration: f64,
) -> Result<fertivision::store::Analysis, StoreError> {
    let (input, result) = semen(concentration);
    store
        .insert_analysis(NewAnalysis {
            patient_id,
            kind: AnalysisKind::Semen,
            input,
            result,
        })
        .await
}

store_test!(patients_round_trip, |store: Store| async move {
    let created = store.create_patient(patient("MR-ROUND001")).await.unwrap();
    assert_eq!(store.get_patient(created.id).await.unwrap(), created);
    assert_eq!(
        store.find_patient_by_mrn("MR-ROUND001").await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(
        store.find_patient_by_mrn("MR-NOBODY00").await.unwrap(),
        None
    );

    let patch = PatientPatch {
        name: Some("New Name".into()),
        email: Some(None),
        ..Default::default()
    };
    let updated = store.update_patient(created.id, patch).await.unwrap();
    assert_eq!(updated.name, "New Name");
    assert_eq!(updated.email, None, "explicit null clears the email");
    assert_eq!(updated.phone, created.phone, "absent fields stay");
    assert!(updated.updated_at >= created.updated_at);

    assert!(matches!(
        store
            .update_patient(Uuid::now_v7(), PatientPatch::default())
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.get_patient(Uuid::now_v7()).await,
        Err(StoreError::NotFound)
    ));
});

store_test!(record_numbers_are_unique, |store: Store| async move {
    store.create_patient(patient("MR-UNIQUE01")).await.unwrap();
    let err = store
        .create_patient(patient("MR-UNIQUE01"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let other = store.create_patient(patient("MR-UNIQUE02")).await.unwrap();
    let patch = PatientPatch {
        mrn: Some("MR-UNIQUE01".into()),
        ..Default::default()
    };
    assert!(matches!(
        store.update_patient(other.id, patch).await,
        Err(StoreError::Conflict(_))
    ));
});

store_test!(patients_page_by_cursor, |store: Store| async move {
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(
            store
                .create_patient(patient(&format!("MR-PAGE{i:04}")))
                .await
                .unwrap()
                .id,
        );
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_patients(3, cursor).await.unwrap();
        seen.extend(page.iter().map(|p| p.id));
        if page.len() < 3 {
            break;
        }
        cursor = page.last().map(|p| p.id);
    }
    assert_eq!(seen, ids, "every patient once, in creation order");
});

store_test!(
    analysis_updates_score_and_summary,
    |store: Store| async move {
        let p = store.create_patient(patient("MR-SUMMARY1")).await.unwrap();
        let summaries = store.list_summaries(10, None).await.unwrap();
        assert_eq!(summaries.len(), 1, "a new patient has a summary row");
        assert_eq!(summaries[0].completed_analyses, 0);
        assert_eq!(summaries[0].latest_score, None);

        add_semen(&store, p.id, 40.0).await.unwrap();
        let s = &store.list_summaries(10, None).await.unwrap()[0];
        assert_eq!(s.patient_id, p.id);
        assert_eq!(s.completed_analyses, 1);
        let score = s.latest_score.expect("score after an analysis");
        assert!(
            score > 50.0,
            "normal semen raises the score above the no-data level: {score}"
        );
        assert!(s.latest_band.is_some());

        // A worse analysis lowers the latest score.
        add_semen(&store, p.id, 0.0).await.unwrap();
        let s = &store.list_summaries(10, None).await.unwrap()[0];
        assert_eq!(s.completed_analyses, 2);
        assert!(s.latest_score.unwrap() < score);
        assert_eq!(store.list_analyses(p.id).await.unwrap().len(), 2);
    }
);

store_test!(
    analysis_for_unknown_patient_writes_nothing,
    |store: Store| async move {
        let err = add_semen(&store, Uuid::now_v7(), 20.0).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound), "{err:?}");
        assert!(store.list_summaries(10, None).await.unwrap().is_empty());
    }
);

store_test!(documents_and_summary, |store: Store| async move {
    let p = store.create_patient(patient("MR-DOCS0001")).await.unwrap();
    let first = store.insert_document(document(p.id), None).await.unwrap().0;
    let second = store.insert_document(document(p.id), None).await.unwrap().0;
    assert_eq!(first.analysis_status, "pending");
    assert_eq!(store.get_document(first.id).await.unwrap(), first);
    let page = store.list_documents(p.id, 1, None).await.unwrap();
    assert_eq!(page, vec![first.clone()]);
    let page = store
        .list_documents(p.id, 10, Some(first.id))
        .await
        .unwrap();
    assert_eq!(page, vec![second.clone()]);

    let s = &store.list_summaries(10, None).await.unwrap()[0];
    assert_eq!(s.document_count, 2);
    assert_eq!(
        s.completed_analyses, 0,
        "pending documents are not completed analyses"
    );
    assert_eq!(s.last_document_at, Some(second.created_at));

    assert!(matches!(
        store.insert_document(document(Uuid::now_v7()), None).await,
        Err(StoreError::NotFound)
    ));
});

store_test!(
    delete_cascades_and_returns_object_keys,
    |store: Store| async move {
        let p = store.create_patient(patient("MR-DELETE01")).await.unwrap();
        let keep = store.create_patient(patient("MR-KEEP0001")).await.unwrap();
        let doc = store.insert_document(document(p.id), None).await.unwrap().0;
        add_semen(&store, p.id, 20.0).await.unwrap();
        let keys = store.delete_patient(p.id).await.unwrap();
        assert_eq!(keys, vec![doc.object_key]);
        assert!(matches!(
            store.get_patient(p.id).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.get_document(doc.id).await,
            Err(StoreError::NotFound)
        ));
        assert!(store.list_analyses(p.id).await.unwrap().is_empty());
        let summaries = store.list_summaries(10, None).await.unwrap();
        assert_eq!(
            summaries.iter().map(|s| s.patient_id).collect::<Vec<_>>(),
            vec![keep.id]
        );
        assert!(matches!(
            store.delete_patient(p.id).await,
            Err(StoreError::NotFound)
        ));
    }
);

store_test!(tokens_are_found_by_hash, |store: Store| async move {
    assert_eq!(store.count_tokens().await.unwrap(), 0);
    let id = store.insert_token("abc123", "lab", "bench").await.unwrap();
    let found = store.find_token("abc123").await.unwrap().unwrap();
    assert_eq!((found.id, found.role.as_str()), (id, "lab"));
    assert_eq!(store.find_token("nope").await.unwrap(), None);
    assert!(matches!(
        store.insert_token("abc123", "admin", "").await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.count_tokens().await.unwrap(), 1);
});

store_test!(
    concurrent_writes_all_land_in_the_summary,
    |store: Store| async move {
        let p = store.create_patient(patient("MR-CONCUR01")).await.unwrap();
        let writers: Vec<_> = (0..16)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    if i % 2 == 0 {
                        add_semen(&store, p.id, 20.0).await.map(|_| ())
                    } else {
                        store
                            .insert_document(document(p.id), None)
                            .await
                            .map(|_| ())
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap().unwrap();
        }
        // On PostgreSQL the writes left the view's refresh to the background, coalesced; a
        // summary read waits for it, so every write shows, and a deletion too.
        let s = &store.list_summaries(10, None).await.unwrap()[0];
        assert_eq!((s.completed_analyses, s.document_count), (8, 8));
        store.delete_patient(p.id).await.unwrap();
        assert!(store.list_summaries(10, None).await.unwrap().is_empty());
    }
);

store_test!(summary_kind_matches_backend, |store: Store| async move {
    let is_view = store.summary_is_materialized_view().await.unwrap();
    assert_eq!(is_view, store.backend_name() == "postgresql");
    store.ping().await.unwrap();
});

store_test!(
    alert_notifications_newest_first_by_status,
    |store: Store| async move {
        use chrono::{Duration, Utc};
        use fertivision::store::NewAlertNotification;
        let started = Utc::now() - Duration::minutes(10);
        let alert = |name: &str, status: &str, ended: bool| NewAlertNotification {
            alertname: name.to_owned(),
            status: status.to_owned(),
            severity: "page".to_owned(),
            fingerprint: format!("fp-{name}"),
            starts_at: started,
            ends_at: ended.then(Utc::now),
            labels: json!({"alertname": name, "job": "fertivision-api"}).to_string(),
            annotations: json!({"summary": "s"}).to_string(),
            receiver: "platform".to_owned(),
        };
        store
            .insert_alert_notifications(&[alert("A", "firing", false), alert("B", "firing", false)])
            .await
            .unwrap();
        store
            .insert_alert_notifications(&[alert("A", "resolved", true)])
            .await
            .unwrap();
        let all = store.list_alert_notifications(10, None).await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].alertname, "A");
        assert_eq!(all[0].status, "resolved");
        assert!(all[0].ends_at.is_some());
        assert!(all[0].received_at >= all[2].received_at);
        let firing = store
            .list_alert_notifications(10, Some("firing"))
            .await
            .unwrap();
        assert_eq!(firing.len(), 2);
        assert!(
            firing
                .iter()
                .all(|a| a.status == "firing" && a.ends_at.is_none())
        );
        let one = store.list_alert_notifications(1, None).await.unwrap();
        assert_eq!(one.len(), 1);
        let labels: serde_json::Value = serde_json::from_str(&one[0].labels).unwrap();
        assert_eq!(labels["job"], "fertivision-api");
        assert_eq!(one[0].starts_at.timestamp(), started.timestamp());
    }
);

/// A write that times out may still commit once the database gets to it, so the store says
/// it is unconfirmed; a read that times out is only a timeout.
#[tokio::test]
async fn a_write_that_times_out_is_unconfirmed_and_a_read_only_timed_out() {
    use sqlx::Connection;
    use std::str::FromStr;
    use std::time::Duration;

    let Some(test) = common::TestStore::new(common::Backend::Postgres).await else {
        return;
    };
    let patient = test
        .store
        .create_patient(patient("MR-HASTY001"))
        .await
        .unwrap();
    let options = sqlx::postgres::PgConnectOptions::from_str(&common::database_url())
        .unwrap()
        .options([("search_path", test.schema().unwrap())]);
    let hasty = Store::from_pg_options(
        options.clone(),
        &fertivision::store::StoreOptions {
            call_timeout: Duration::from_millis(300),
            ..fertivision::store::StoreOptions::default()
        },
    )
    .await
    .unwrap();
    // Another session holds the table: every statement on it waits.
    let mut holder = sqlx::PgConnection::connect_with(&options).await.unwrap();
    let mut held = holder.begin().await.unwrap();
    sqlx::query("LOCK TABLE analyses IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *held)
        .await
        .unwrap();

    let write = add_semen(&hasty, patient.id, 50.0).await;
    assert!(
        matches!(&write, Err(StoreError::Unconfirmed(cause)) if matches!(**cause, StoreError::Timeout(_))),
        "{write:?}"
    );
    let read = hasty.list_analyses(patient.id).await;
    assert!(matches!(read, Err(StoreError::Timeout(_))), "{read:?}");

    held.rollback().await.unwrap();
    hasty.close().await;
    test.cleanup().await;
}
