#!/usr/bin/env bash
# derive.sh — regenerate dashboard.schema.json from Grafana's own TypeScript types.
#
# What it does:
#   1. In a throw-away temp dir, installs pinned npm packages:
#        @grafana/schema@13.2.3        (source of the `Dashboard` type, schemaVersion 42)
#        typescript-json-schema@0.68.0  (TS type -> JSON Schema draft-07 generator)
#        typescript@5.9.3
#   2. Runs:
#        typescript-json-schema node_modules/@grafana/schema/dist/types/index.d.ts Dashboard \
#          --required --strictNullChecks
#      i.e. the `Dashboard` interface the package exports from its entry point (the
#      "veneer" type in dist/types/veneer/dashboard.types.d.ts, which refines
#      dist/types/raw/dashboard/x/types.gen.d.ts), with every referenced definition.
#   3. Post-processes the generator output (node, below):
#      a. cosmetic: renames generic definition names such as
#         `Panel<Record<string,unknown>,Record<string,unknown>>` to `Panel` (and
#         `Record<string,unknown>` to `Record_string_unknown`) so every "$ref" is a plain
#         JSON pointer with no percent-encoding; adds "$comment" and "title";
#         pretty-prints with 2-space indentation.
#      b. the ONE semantic adjustment: `Panel.type` gets `"not": {"const": "row"}`.
#         `Dashboard.panels` is `anyOf [Panel, RowPanel]` and the generated objects are
#         open (no additionalProperties:false), so without this any row object, however
#         broken, also matched `Panel` (whose only required field is `type`, a string)
#         and the panels nested in a row were never checked. Grafana itself treats
#         type "row" as a RowPanel, so this only makes the union discriminated.
#
# The output (dashboard.schema.json next to this script) is COMMITTED, so the build and
# CI only read that file and never need node/npm or network access. Run this script by
# hand only when bumping the Grafana version, then review and commit the diff.
#
# Usage:
#   dashboards/schema/derive.sh            # rewrite dashboard.schema.json
#   dashboards/schema/derive.sh --check    # exit 1 if the committed file differs
#   dashboards/schema/derive.sh OUT.json   # write somewhere else
#
# Needs: bash, node (>=18) and npm with access to the npm registry.
# Note: only the three top-level packages are pinned (no lockfile); their transitive
# dependencies do not affect the emitted schema text in practice.
set -euo pipefail

GRAFANA_SCHEMA_VERSION=13.2.3
TJS_VERSION=0.68.0
TYPESCRIPT_VERSION=5.9.3
TYPE_NAME=Dashboard

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
committed="$here/dashboard.schema.json"

check=0
out="$committed"
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) out="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")" ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

cat > package.json <<JSON
{ "name": "derive-grafana-dashboard-schema", "version": "0.0.0", "private": true }
JSON

npm install --silent --no-audit --no-fund --save-exact \
  "@grafana/schema@${GRAFANA_SCHEMA_VERSION}" \
  "typescript-json-schema@${TJS_VERSION}" \
  "typescript@${TYPESCRIPT_VERSION}" >&2

npx --no-install typescript-json-schema \
  node_modules/@grafana/schema/dist/types/index.d.ts "$TYPE_NAME" \
  --required --strictNullChecks \
  -o raw.schema.json

GRAFANA_SCHEMA_VERSION="$GRAFANA_SCHEMA_VERSION" TJS_VERSION="$TJS_VERSION" TYPE_NAME="$TYPE_NAME" \
node - raw.schema.json derived.schema.json <<'JS'
const fs = require('fs');
const [inFile, outFile] = process.argv.slice(2);
const s = JSON.parse(fs.readFileSync(inFile, 'utf8'));
const defs = s.definitions || {};

// Rename "Foo<...>" to "Foo" when the base name is unique, otherwise to a
// sanitised name ("Record<string,unknown>" -> "Record_string_unknown").
const base = (n) => n.replace(/<.*$/, '');
const counts = {};
for (const n of Object.keys(defs)) counts[base(n)] = (counts[base(n)] || 0) + 1;
const rename = {};
for (const n of Object.keys(defs)) {
  let m = n;
  if (/[^A-Za-z0-9_]/.test(n)) {
    m = counts[base(n)] === 1 && !(base(n) in defs)
      ? base(n)
      : n.replace(/[^A-Za-z0-9_]+/g, '_').replace(/_+$/, '');
  }
  rename[n] = m;
}
if (new Set(Object.values(rename)).size !== Object.keys(rename).length) {
  throw new Error('definition rename collision: ' + JSON.stringify(rename));
}
const newDefs = {};
for (const n of Object.keys(defs).sort((a, b) => rename[a] < rename[b] ? -1 : rename[a] > rename[b] ? 1 : 0)) {
  newDefs[rename[n]] = defs[n];
}
const fixRefs = (v) => {
  if (Array.isArray(v)) return v.map(fixRefs);
  if (v && typeof v === 'object') {
    const o = {};
    for (const [k, x] of Object.entries(v)) {
      if (k === '$ref' && typeof x === 'string' && x.startsWith('#/definitions/')) {
        const name = decodeURIComponent(x.slice('#/definitions/'.length));
        if (!(name in rename)) throw new Error('dangling $ref ' + x);
        o[k] = '#/definitions/' + rename[name];
      } else {
        o[k] = fixRefs(x);
      }
    }
    return o;
  }
  return v;
};
// Adjustment (b): discriminate the Panel | RowPanel union on `type`.
const panelType = newDefs.Panel && newDefs.Panel.properties && newDefs.Panel.properties.type;
if (!panelType || panelType.type !== 'string') throw new Error('unexpected Panel.type: ' + JSON.stringify(panelType));
panelType.not = { const: 'row' };
if (!newDefs.RowPanel || newDefs.RowPanel.properties.type.const !== 'row') throw new Error('unexpected RowPanel.type');

const { $schema, definitions, ...root } = s;
const result = {
  $schema,
  $comment: `Grafana dashboard JSON model. Derived from the \`${process.env.TYPE_NAME}\` type of ` +
    `@grafana/schema@${process.env.GRAFANA_SCHEMA_VERSION} by typescript-json-schema@${process.env.TJS_VERSION} ` +
    `via dashboards/schema/derive.sh. Generated file: do not edit by hand.`,
  title: 'Dashboard',
  ...fixRefs(root),
  definitions: fixRefs(newDefs),
};
fs.writeFileSync(outFile, JSON.stringify(result, null, 2) + '\n');
JS

if [ "$check" = 1 ]; then
  if cmp -s derived.schema.json "$committed"; then
    echo "dashboard.schema.json is up to date" >&2
  else
    diff -u "$committed" derived.schema.json | head -50 >&2 || true
    echo "dashboard.schema.json is stale: run dashboards/schema/derive.sh" >&2
    exit 1
  fi
else
  cp derived.schema.json "$out"
  echo "wrote $out" >&2
fi
