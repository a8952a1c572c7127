// `tsx scripts/singularity-properties.ts <Singularity checkout>`: prints, as JSON, the JSON
// property names of Singularity's model classes the way Jackson reads them (the @JsonCreator's
// @JsonProperty parameters) and writes them (public getters without @JsonIgnore, renamed by
// @JsonProperty, inherited ones included). Its output is committed as
// test/fixtures/singularity/properties.json, which the compatibility tests read: CI has no
// network, so the classes are read here, once, from a checkout (the `fetch` of HubSpot/Singularity).
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

const ROOTS = ['SingularityBase/src/main/java/com/hubspot'];

/** The classes the API reads or writes, by simple name. */
const CLASSES = [
  'SingularityRequest',
  'SingularityDeploy',
  'SingularityDeployRequest',
  'SingularityScaleRequest',
  'SingularityPauseRequest',
  'SingularityUnpauseRequest',
  'SingularityBounceRequest',
  'SingularityRunNowRequest',
  'SingularityExitCooldownRequest',
  'SingularitySkipHealthchecksRequest',
  'SingularityDeleteRequestRequest',
  'SingularityKillTaskRequest',
  'SingularityMachineChangeRequest',
  'SingularityUpdatePendingDeployRequest',
  'HealthcheckOptions',
  'CanaryDeploySettings',
  'Resources',
  'SingularityMesosArtifact',
  'ExecutorData',
  'ExternalArtifact',
  'EmbeddedArtifact',
  'S3Artifact',
  'SingularityContainerInfo',
  'SingularityDockerInfo',
  'SingularityDockerPortMapping',
  'SingularityVolume',
  'SingularityRequestParent',
  'SingularityRequestWithState',
  'SingularityRequestDeployState',
  'SingularityDeployMarker',
  'SingularityPendingDeploy',
  'SingularityDeployProgress',
  'SingularityLoadBalancerUpdate',
  'SingularityDeployResult',
  'SingularityDeployFailure',
  'SingularityDeployHistory',
  'SingularityDeployUpdate',
  'SingularityTask',
  'SingularityTaskId',
  'SingularityTaskRequest',
  'SingularityPendingTask',
  'SingularityPendingTaskId',
  'SingularityTaskHistory',
  'SingularityTaskHistoryUpdate',
  'SingularityTaskHealthcheckResult',
  'SingularityTaskIdHistory',
  'SingularityTaskCleanup',
  'SingularityTaskIdsByStatus',
  'SingularityTaskCounts',
  'SingularityState',
  'SingularityRequestHistory',
  'SingularityRequestCleanup',
  'SingularityExpiringBounce',
  'SingularityExpiringPause',
  'SingularityExpiringScale',
  'SingularityExpiringSkipHealthchecks',
  'SingularitySandbox',
  'SingularitySandboxFile',
  'MesosTaskObject',
  'MesosOfferObject',
  'MesosResourceObject',
  'MesosRangesObject',
  'MesosRangeObject',
  'MesosTaskStatusObject',
];

/** The enums whose values the API reads or writes. */
const ENUMS = [
  'RequestType',
  'RequestState',
  'DeployState',
  'DeployAcceptanceMode',
  'DeployAcceptanceState',
  'ExtendedTaskState',
  'TaskCleanupType',
  'RequestCleanupType',
  'SingularityDeployFailureReason',
  'LoadBalancerRequestState',
  'LoadBalancerRequestType',
  'HealthcheckProtocol',
  'HealthcheckMethod',
  'AgentPlacement',
  'SlavePlacement',
  'ScheduleType',
  'PendingType',
  'SingularityContainerType',
  'SingularityDockerNetworkType',
  'SingularityPortMappingType',
  'SingularityDockerVolumeMode',
  'SingularityVolumeSourceType',
  'SingularityExecutorLogrotateFrequency',
  'SingularityEmailType',
  'SingularityEmailDestination',
  'SingularityUserFacingAction',
  'MesosTaskState',
];

interface ClassProperties {
  source: string;
  extends?: string;
  /** what Jackson reads: the @JsonCreator parameters */
  input: string[];
  /** what Jackson writes: getters (own and inherited) */
  output: string[];
}

function javaFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? javaFiles(full) : name.endsWith('.java') ? [full] : [];
  });
}

/** Comments removed, string literals replaced by `"#n"` (so their contents cannot look like code). */
function tokenize(source: string): { code: string; strings: string[] } {
  const strings: string[] = [];
  const code = source.replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*/g, ' ').replace(/"(?:[^"\\]|\\.)*"/g, (s) => {
    strings.push(JSON.parse(s) as string);
    return `"#${strings.length - 1}"`;
  });
  return { code, strings };
}

function balanced(code: string, open: number): string {
  let depth = 0;
  for (let i = open; i < code.length; i++) {
    if (code[i] === '(') depth++;
    else if (code[i] === ')' && --depth === 0) return code.slice(open + 1, i);
  }
  throw new Error('unbalanced parentheses');
}

const propertyNames = (text: string, strings: string[]) =>
  [...text.matchAll(/@JsonProperty\s*\(\s*(?:value\s*=\s*)?"#(\d+)"/g)].map((m) => strings[Number(m[1])] as string);

function readClass(file: string): Omit<ClassProperties, 'source'> & { name: string } {
  const { code, strings } = tokenize(readFileSync(file, 'utf8'));
  const name = path.basename(file, '.java');
  const header = new RegExp(`class\\s+${name}\\b[^{]*`).exec(code)?.[0] ?? '';
  // Type parameters (`<T extends X>`) hold `extends` too: drop them before looking for the superclass.
  let plain = header;
  while (/<[^<>]*>/.test(plain)) plain = plain.replace(/<[^<>]*>/g, '');
  const parent = /\bextends\s+([A-Z]\w*)/.exec(plain)?.[1];
  const input = new Set<string>();
  // Creators: @JsonCreator methods, and constructors whose parameters carry @JsonProperty
  // (Jackson takes those as the creator too).
  const creators = [...code.matchAll(/@JsonCreator\b/g)].map((m) => {
    const at = (m.index ?? 0) + m[0].length;
    return /^\s*\(/.test(code.slice(at)) ? code.indexOf(')', at) + 1 : at; // @JsonCreator(mode = ...)
  });
  for (const m of code.matchAll(new RegExp(`public\\s+${name}\\s*\\(`, 'g'))) creators.push(m.index ?? 0);
  for (const at of creators) {
    for (const p of propertyNames(balanced(code, code.indexOf('(', at)), strings)) input.add(p);
  }
  const output = new Set<string>();
  const getter = /public\s+(static\s+)?([\w<>[\], ?.]+?)\s+(get|is)([A-Z]\w*)\s*\(\s*\)/g;
  for (const m of code.matchAll(getter)) {
    if (m[1]) continue;
    if (m[3] === 'is' && !/^(boolean|Boolean)$/.test((m[2] ?? '').trim())) continue;
    // The annotations of this method: back to the end of the previous member.
    const before = code.slice(0, m.index);
    const start = Math.max(before.lastIndexOf(';'), before.lastIndexOf('}'), before.lastIndexOf('{'));
    const annotations = before.slice(start + 1);
    // Ignored, or flattened into the object (@JsonAnyGetter: Mesos' unknown fields).
    if (/@JsonIgnore\b(?!Properties)|@JsonAnyGetter\b/.test(annotations)) continue;
    const renamed = propertyNames(annotations, strings)[0];
    const bare = m[4] as string;
    output.add(renamed ?? bare.charAt(0).toLowerCase() + bare.slice(1));
  }
  return { name, ...(parent ? { extends: parent } : {}), input: [...input], output: [...output] };
}

/** Constants of every `enum Name { A(...), B, ...; }` in a file, by enum name. */
function readEnums(file: string): Map<string, string[]> {
  const { code } = tokenize(readFileSync(file, 'utf8'));
  const out = new Map<string, string[]>();
  for (const m of code.matchAll(/\benum\s+(\w+)[^{]*\{/g)) {
    const body = code.slice((m.index ?? 0) + m[0].length);
    // The constants end at the first `;` or `}` outside their own parentheses.
    let depth = 0;
    let end = body.length;
    for (let i = 0; i < body.length; i++) {
      const ch = body[i];
      if (ch === '(') depth++;
      else if (ch === ')') depth--;
      else if (depth === 0 && (ch === ';' || ch === '}')) {
        end = i;
        break;
      }
    }
    let flat = body.slice(0, end);
    while (/\([^()]*\)/.test(flat)) flat = flat.replace(/\([^()]*\)/g, '');
    const names = flat
      .split(',')
      .map((s) => s.replace(/@\w+/g, '').trim())
      .filter((s) => /^[A-Z][A-Z0-9_]*$/.test(s));
    out.set(m[1] as string, names);
  }
  return out;
}

function main(): void {
  const checkout = process.argv[2];
  if (!checkout) throw new Error('usage: tsx scripts/singularity-properties.ts <Singularity checkout> [commit]');
  // An exported tree (git archive) has no .git: then the commit is given.
  const commit = process.argv[3] ?? execFileSync('git', ['-C', checkout, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
  const found = new Map<string, ReturnType<typeof readClass> & { file: string }>();
  const enums = new Map<string, { source: string; values: string[] }>();
  for (const root of ROOTS) {
    for (const file of javaFiles(path.join(checkout, root))) {
      const c = readClass(file);
      found.set(c.name, { ...c, file: path.relative(checkout, file) });
      for (const [name, values] of readEnums(file)) enums.set(name, { source: path.relative(checkout, file), values });
    }
  }
  const outputOf = (name: string): string[] => {
    const c = found.get(name);
    if (!c) return [];
    return [...new Set([...(c.extends ? outputOf(c.extends) : []), ...c.output])];
  };
  const classes: Record<string, ClassProperties> = {};
  for (const name of CLASSES) {
    const c = found.get(name);
    if (!c) throw new Error(`class ${name} not found`);
    classes[name] = {
      source: c.file,
      ...(c.extends ? { extends: c.extends } : {}),
      input: [...c.input].sort(),
      output: outputOf(name).sort(),
    };
  }
  const enumValues: Record<string, { source: string; values: string[] }> = {};
  for (const name of ENUMS) {
    const e = enums.get(name);
    if (!e) throw new Error(`enum ${name} not found`);
    enumValues[name] = e;
  }
  const out = { source: `https://github.com/HubSpot/Singularity at ${commit}`, classes, enums: enumValues };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

main();
