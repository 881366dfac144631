// `node --import <this> ...`: installs trace-hooks.mjs before the CLI's first import.
import { register } from 'node:module';

register('./trace-hooks.mjs', import.meta.url);
