import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
const require = createRequire(import.meta.url);
const pkg = dirname(require.resolve("windmill-parser-wasm-ts/package.json"));
const { initSync, parse_deno } = await import("windmill-parser-wasm-ts");
initSync({ module: readFileSync(join(pkg, "windmill_parser_wasm_bg.wasm")) });
const [file, entry] = process.argv.slice(2);
process.stdout.write(parse_deno(readFileSync(file, "utf8"), entry || null));
