// `prometheus` acceptance check: a PromQL query against max/min, or (maxVsOld) the same query
// for the new deploy's tasks and the old deploy's compared; PENDING on too few samples or no data.
import type { AcceptanceCheckSpec } from '../../core/model.ts';
import { specCheck } from '../spec-check.ts';
import type { Check, CheckAnswer, CheckContext, CheckFactory } from '../types.ts';
import { instantQuery } from './client.ts';
import { evaluatePrometheus, readValue, substituteQuery, type PrometheusCheckOptions, type PromSide, type QueryVars } from './evaluate.ts';
import { prometheusTarget, type PrometheusSettings } from './target.ts';

export function prometheusCheckFactory(settings: PrometheusSettings): CheckFactory {
  return (spec: AcceptanceCheckSpec): Check => {
    const o: PrometheusCheckOptions = { oldFloor: 0, ...(spec.options as Omit<PrometheusCheckOptions, 'oldFloor'>) };
    const compare = o.maxVsOld !== undefined;
    return specCheck(spec, async (ctx: CheckContext): Promise<CheckAnswer> => {
      // Checked again at each call: the server's options may have changed since the deploy.
      const target = prometheusTarget(settings, o.url);
      if ('refused' in target) throw new Error(target.refused);
      const old = new Set(ctx.deployIds.old);
      const vars: QueryVars = {
        requestId: ctx.request.id,
        deployId: ctx.deploy.id,
        step: ctx.step,
        newTaskIds: ctx.taskIds.newActive.map((t) => t.id),
        oldTaskIds: ctx.taskIds.otherActive.filter((t) => old.has(t.deployId)).map((t) => t.id),
      };
      const usesNew = [o.query, o.samplesQuery].some((q) => q?.includes('$NEW_TASK_IDS'));
      if ((compare || usesNew) && vars.newTaskIds.length === 0) return { state: 'PENDING', message: 'no healthy new task yet' };
      const ask = async (query: string, taskIds?: readonly string[]) =>
        readValue(await instantQuery(target.url, substituteQuery(query, { ...vars, ...(taskIds ? { taskIds } : {}) }), ctx.signal));
      const side = async (taskIds?: readonly string[]): Promise<PromSide> => {
        const [value, samples] = await Promise.all([ask(o.query, taskIds), o.samplesQuery ? ask(o.samplesQuery, taskIds) : undefined]);
        return { value, ...(samples ? { samples: 'value' in samples ? samples.value : 0 } : {}) };
      };
      const [fresh, before] = await Promise.all([
        side(compare ? vars.newTaskIds : undefined),
        compare && vars.oldTaskIds.length > 0 ? side(vars.oldTaskIds) : undefined,
      ]);
      return evaluatePrometheus(o, fresh, before);
    });
  };
}
