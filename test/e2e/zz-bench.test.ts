import { it } from 'vitest';
import { LAYOUTS } from './harness/qemu.js';
import { runScenario } from './harness/suite.js';
it('bench', async () => {
  await runScenario('6.12', LAYOUTS.bootGpu, 'bench', { pkgs: '@pinojs/redact,ajv,atomic-sleep,commander,fast-deep-equal,fast-uri,json-schema-traverse,on-exit-leak-free,pino,pino-std-serializers,quick-format-unescaped,safe-stable-stringify,sonic-boom,thread-stream,yaml' });
});
