// Windmill's own validators over files named on the command line; one JSON line each.
//   node tools/windmill_check.mjs yaml <file>...   windmill-yaml-validator (flow, schedule, trigger)
//   node tools/windmill_check.mjs py <file>...     windmill-parser-wasm-py (main and preprocessor signatures)
//   node tools/windmill_check.mjs sql <file>...    windmill-parser-wasm-regex parse_sql (a .pg.sql script's arguments,
//                                                  as `wmill script generate-metadata` infers them for language postgresql)
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const [mode, ...files] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

if (mode === "yaml") {
  const { WindmillYamlValidator, getValidationTargetFromFilename } = await import("windmill-yaml-validator");
  const validator = new WindmillYamlValidator();
  for (const file of files) {
    const target = getValidationTargetFromFilename(file);
    if (!target) { out({ file, target: null, errors: [], diagnostics: [] }); continue; }
    const { parsed, errors } = validator.validate(readFileSync(file, "utf8"), target);
    out({
      file,
      target,
      errors: errors.map((e) => ({ path: e.instancePath, message: e.message, params: e.params })),
      diagnostics: (parsed.diagnostics || []).map((d) => ({ message: d.message, severity: d.severity, range: d.range })),
    });
  }
} else if (mode === "py") {
  const require = createRequire(import.meta.url);
  const pkg = dirname(require.resolve("windmill-parser-wasm-py/package.json"));
  const { initSync, parse_python } = await import("windmill-parser-wasm-py");
  initSync({ module: readFileSync(join(pkg, "windmill_parser_wasm_bg.wasm")) });
  for (const file of files) {
    const code = readFileSync(file, "utf8");
    const parse = (entry) => { try { return JSON.parse(parse_python(code, entry)); } catch (e) { return { error: String(e) }; } };
    out({ file, main: parse(null), preprocessor: parse("preprocessor") });
  }
} else if (mode === "sql") {
  const require = createRequire(import.meta.url);
  const pkg = dirname(require.resolve("windmill-parser-wasm-regex/package.json"));
  const { initSync, parse_sql } = await import("windmill-parser-wasm-regex");
  initSync({ module: readFileSync(join(pkg, "windmill_parser_wasm_bg.wasm")) });
  for (const file of files) {
    let main;
    try { main = JSON.parse(parse_sql(readFileSync(file, "utf8"))); } catch (e) { main = { error: String(e) }; }
    out({ file, main });
  }
} else {
  console.error("usage: windmill_check.mjs yaml|py|sql <file>...");
  process.exit(2);
}
