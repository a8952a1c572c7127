// `npm run check:modules`: two guard rails over the sources, with the TypeScript compiler the
// project already uses (no other dependency), run by `npm test`:
//   1. no import cycle among the project's own modules (type-only imports included);
//   2. no unused export: every export of a non-test module under src/ is imported somewhere
//      (tests, bench and scripts count as importers), or used in its own module (a type in
//      an exported signature), or belongs to an entry point listed below. Re-exports (a
//      family's index.ts) count as uses of what they re-export and are not checked themselves.
// Exits 1 naming each cycle and each unused export.
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PROJECTS = ['tsconfig.json', 'src/ui/tsconfig.json'];
/** Modules whose exports are read by tools, not imported by our code. */
const ENTRY_POINTS = new Set(['src/ui/vite.config.ts', 'src/ui/main.tsx', 'src/cli/main.ts']);
/**
 * Exports kept unused on purpose, each with its reason. Keep this short: an entry goes once the
 * export is used or deleted.
 */
const KEPT = new Map([['src/store/types.ts: StoreConflictError', 'the store contract for the PostgreSQL store under way']]);

const rel = (file: string) => relative(ROOT, file);
const isOurs = (file: string) => !file.includes('/node_modules/') && rel(file).split('/')[0] !== '..';
const isTest = (file: string) => /\.(test|case)\.tsx?$/.test(file) || /\.test-d\.ts$/.test(file);

function load(project: string): ts.Program {
  const path = resolve(ROOT, project);
  const config = ts.readConfigFile(path, (p) => ts.sys.readFile(p));
  if (config.error) throw new Error(ts.flattenDiagnosticMessageText(config.error.messageText, '\n'));
  const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, dirname(path));
  return ts.createProgram({ rootNames: parsed.fileNames, options: { ...parsed.options, noEmit: true } });
}

/** Module specifiers of imports, re-exports and dynamic imports in one file. */
function specifiers(source: ts.SourceFile): string[] {
  const found: string[] = [];
  const visit = (node: ts.Node) => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
      node.moduleSpecifier &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      found.push(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      if (arg && ts.isStringLiteralLike(arg)) found.push(arg.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

const graph = new Map<string, Set<string>>();
/** Exports are keyed "file: name" (the file that declares or re-exports them): the two programs' symbols differ. */
const keyOf = (symbol: ts.Symbol) => {
  const declaration = symbol.declarations?.[0];
  return declaration ? `${rel(declaration.getSourceFile().fileName)}: ${symbol.name}` : undefined;
};
const used = new Set<string>();
const exported = new Map<string, string[]>();
/** exports referenced inside their own module */
const usedInFile = new Set<string>();

for (const project of PROJECTS) {
  const program = load(project);
  const checker = program.getTypeChecker();
  const markChain = (symbol: ts.Symbol | undefined) => {
    for (let s = symbol; s;) {
      const key = keyOf(s);
      if (key) used.add(key);
      if (!(s.flags & ts.SymbolFlags.Alias)) break;
      s = checker.getImmediateAliasedSymbol(s);
    }
  };
  const moduleOf = (node: ts.Expression | undefined) => (node ? checker.getSymbolAtLocation(node) : undefined);

  for (const source of program.getSourceFiles()) {
    const file = source.fileName;
    if (!isOurs(file) || source.isDeclarationFile) continue;
    const edges = graph.get(rel(file)) ?? new Set<string>();
    graph.set(rel(file), edges);
    for (const spec of specifiers(source)) {
      const target = ts.resolveModuleName(spec, file, program.getCompilerOptions(), ts.sys).resolvedModule?.resolvedFileName;
      if (target && isOurs(target) && !target.endsWith('.d.ts')) edges.add(rel(target));
    }

    const moduleSymbol = checker.getSymbolAtLocation(source);
    if (moduleSymbol && file.includes('/src/') && !isTest(file) && !ENTRY_POINTS.has(rel(file)) && !exported.has(rel(file))) {
      exported.set(
        rel(file),
        checker.getExportsOfModule(moduleSymbol).flatMap((symbol) => keyOf(symbol) ?? []),
      );
      ts.forEachChild(source, function refs(node): void {
        if (ts.isIdentifier(node) && (!node.parent || ts.getNameOfDeclaration(node.parent as ts.Declaration) !== node)) {
          const symbol = checker.getSymbolAtLocation(node);
          const key = symbol && keyOf(checker.getExportSymbolOfSymbol(symbol));
          if (key) usedInFile.add(key);
        }
        ts.forEachChild(node, refs);
      });
    }

    // What this file imports: every symbol along each alias chain counts as used.
    ts.forEachChild(source, function visit(node): void {
      if (ts.isImportDeclaration(node) && node.importClause) {
        const clause = node.importClause;
        if (clause.name) markChain(checker.getSymbolAtLocation(clause.name));
        const bindings = clause.namedBindings;
        if (bindings && ts.isNamedImports(bindings)) for (const el of bindings.elements) markChain(checker.getSymbolAtLocation(el.name));
        if (bindings && ts.isNamespaceImport(bindings)) {
          const target = moduleOf(node.moduleSpecifier);
          if (target) for (const s of checker.getExportsOfModule(target)) markChain(s);
        }
      } else if (ts.isExportDeclaration(node) && node.moduleSpecifier) {
        if (node.exportClause && ts.isNamedExports(node.exportClause)) {
          // A re-export (a family's index.ts) counts as a use: barrels are not checked.
          for (const el of node.exportClause.elements) markChain(checker.getSymbolAtLocation(el.name));
        }
      } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
        const target = moduleOf(node.arguments[0]);
        if (target) for (const s of checker.getExportsOfModule(target)) markChain(s);
      } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
        const target = checker.getSymbolAtLocation(node.argument.literal);
        if (target) for (const s of checker.getExportsOfModule(target)) markChain(s);
      }
      ts.forEachChild(node, visit);
    });
  }
}

// 1. Cycles: strongly connected components of the import graph (Tarjan).
const cycles: string[][] = [];
{
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const connect = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || graph.get(v)?.has(v)) cycles.push(component.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) connect(v);
}

// 2. Unused exports.
const unused = [...new Set([...exported.values()].flat())].filter((key) => !used.has(key) && !usedInFile.has(key) && !KEPT.has(key));

for (const cycle of cycles) console.error(`import cycle: ${cycle.join(' → ')}`);
for (const line of unused.sort()) console.error(`unused export: ${line}`);
const files = graph.size;
if (cycles.length > 0 || unused.length > 0) {
  console.error(`check-modules: ${cycles.length} import cycle(s), ${unused.length} unused export(s) in ${files} files`);
  process.exit(1);
}
console.log(`check-modules: ${files} files, no import cycle, no unused export`);
