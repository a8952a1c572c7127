// `command` acceptance check: exit 0 passes, 75 (EX_TEMPFAIL) is PENDING, anything else
// fails with the last line of its output as the message.
import { spawn } from 'node:child_process';
import type { AcceptanceCheckSpec } from '../../core/model.ts';
import { substitute } from '../substitute.ts';
import { specCheck } from '../spec-check.ts';
import type { Check, CheckAnswer, CheckContext } from '../types.ts';

const EX_TEMPFAIL = 75;
const MAX_OUTPUT = 64 * 1024;

export function createCommandCheck(spec: AcceptanceCheckSpec): Check {
  const command = String(spec.options.command);
  return specCheck(spec, (ctx: CheckContext): Promise<CheckAnswer> => {
    return new Promise((resolve, reject) => {
      const child = spawn('/bin/sh', ['-c', substitute(command, ctx)], {
        env: {
          ...process.env,
          REQUEST_ID: ctx.request.id,
          DEPLOY_ID: ctx.deploy.id,
          STEP: String(ctx.step),
          NEW_TASK_IDS: ctx.taskIds.newActive.map((t) => t.id).join(','),
          OLD_TASK_IDS: ctx.taskIds.otherActive.map((t) => t.id).join(','),
        },
        signal: ctx.signal,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      const collect = (chunk: Buffer) => {
        output = (output + chunk.toString('utf8')).slice(-MAX_OUTPUT);
      };
      child.stdout.on('data', collect);
      child.stderr.on('data', collect);
      child.on('error', reject);
      child.on('close', (code) => {
        const last = output.trim().split('\n').at(-1)?.trim() || `exit code ${code}`;
        if (code === 0) resolve({ state: 'SUCCEEDED', message: last });
        else if (code === EX_TEMPFAIL) resolve({ state: 'PENDING', message: last });
        else resolve({ state: 'FAILED', message: last });
      });
    });
  });
}
