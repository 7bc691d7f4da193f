// dist/cjs holds the CommonJS build inside a "type": "module" package: this marker makes Node
// (and TypeScript's node16 resolution) read its .js and .d.ts files as CommonJS.
import { writeFileSync } from "node:fs";

writeFileSync(new URL("../dist/cjs/package.json", import.meta.url), '{ "type": "commonjs" }\n');
