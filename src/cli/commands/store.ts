// `fledge store copy|backup`: move or save state. These open the stores themselves (no server
// is involved), so the store modules load only when a store command runs.
import type { Command } from 'commander';
import { UsageError, type Ctx } from '../context.ts';
import { keyValues } from '../table.ts';

export function registerStore(program: Command, ctx: Ctx): void {
  const store = program.command('store').description('copy state between stores, back a store up');

  const copy = store
    .command('copy')
    .description('copy every request, deploy and task into an empty store (SQLite ⇄ PostgreSQL), verified by counts')
    .requiredOption('--from <store>', 'sqlite:<data dir or file>, or postgres://user:pass@host:port/db')
    .requiredOption('--to <store>', 'the empty target: postgres://… or sqlite:<file or data dir>')
    .option('--json', 'print the counts as JSON');
  copy.action(async (opts: { from: string; to: string }) => {
    const { parseStoreSpec, StoreSpecError } = await import('../../store/spec.ts');
    const { copyStore, describeLocation, StoreCopyError } = await import('../../store/copy.ts');
    const parse = (spec: string, flag: string) => {
      try {
        return parseStoreSpec(spec, '.');
      } catch (err) {
        if (err instanceof StoreSpecError) throw new UsageError(`${flag}: ${err.message}`);
        throw err;
      }
    };
    const from = parse(opts.from, '--from');
    const to = parse(opts.to, '--to');
    try {
      const counts = await copyStore(from, to);
      if (ctx.json(copy)) return ctx.printJson({ from: describeLocation(from), to: describeLocation(to), counts });
      ctx.print(`copied ${describeLocation(from)} → ${describeLocation(to)}; verified:`);
      ctx.print(keyValues(Object.entries(counts).map(([k, v]) => [k.replace('_', ' '), v])));
    } catch (err) {
      if (err instanceof StoreCopyError) throw new UsageError(err.message);
      throw err;
    }
  });

  const backup = store
    .command('backup <file>')
    .description("back a SQLite store up into FILE while Fledge runs (SQLite's online backup); for PostgreSQL use pg_dump")
    .option('--store <store>', 'sqlite:<data dir or file> (default: FLEDGE_STORE, else the data dir)')
    .option('--force', 'overwrite FILE')
    .option('--json', 'print the counts as JSON');
  // --data-dir (the data dir whose fledge.db to back up) is the global option every command has.
  backup.action(async (file: string, local: { store?: string; force?: boolean }) => {
    const opts = { ...local, dataDir: backup.optsWithGlobals<{ dataDir?: string }>().dataDir };
    const { parseStoreSpec, redactUrl, StoreSpecError } = await import('../../store/spec.ts');
    const { backupSqlite, StoreCopyError } = await import('../../store/copy.ts');
    const spec = opts.store ?? (ctx.env.FLEDGE_STORE || undefined);
    let location;
    try {
      location = parseStoreSpec(spec, opts.dataDir ?? (ctx.env.FLEDGE_DATA_DIR || './.fledge'));
    } catch (err) {
      if (err instanceof StoreSpecError) throw new UsageError(`--store: ${err.message}`);
      throw err;
    }
    if (location.kind === 'postgres') {
      throw new UsageError(
        `${redactUrl(location.url)} is PostgreSQL: back it up with pg_dump, e.g. pg_dump --format=custom --file ${file} "$FLEDGE_STORE" (see docs/operations.md)`,
      );
    }
    try {
      const counts = await backupSqlite(location.file, file, { force: opts.force === true });
      if (ctx.json(backup)) return ctx.printJson({ from: `sqlite:${location.file}`, to: file, counts });
      ctx.print(`backed up sqlite:${location.file} → ${file} (integrity ok):`);
      ctx.print(keyValues(Object.entries(counts).map(([k, v]) => [k.replace('_', ' '), v])));
    } catch (err) {
      if (err instanceof StoreCopyError) throw new UsageError(err.message);
      throw err;
    }
  });
}
