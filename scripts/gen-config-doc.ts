// Regenerates docs/configuration.md from the option table.
import { writeFileSync } from 'node:fs';
import { renderOptionsMarkdown } from '../src/config/options-doc.ts';

writeFileSync(new URL('../docs/configuration.md', import.meta.url), renderOptionsMarkdown());
