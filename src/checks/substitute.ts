import type { CheckContext } from './types.ts';

/** `$REQUEST_ID`, `$DEPLOY_ID` and `$STEP` in URLs and commands. */
export function substitute(text: string, ctx: Pick<CheckContext, 'request' | 'deploy' | 'step'>): string {
  return text.replaceAll('$REQUEST_ID', ctx.request.id).replaceAll('$DEPLOY_ID', ctx.deploy.id).replaceAll('$STEP', String(ctx.step));
}
