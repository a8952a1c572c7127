// How a deploy's task is launched, from the stored deploy alone (pure): the command (the
// deploy's, or SingularityExecutor's `executorData.cmd` with its extra arguments), the artifacts
// fetched into the sandbox first, and how its exit is judged.
import type { Deploy, MesosArtifact } from './model.ts';

/** One file the runtime puts into a task's sandbox before the task starts. */
export interface ArtifactFetch {
  /** http(s) or file URL; absent for embedded content */
  url?: string;
  /** base64 content (SingularityExecutor's embedded artifacts) */
  content?: string;
  /** the file, relative to the sandbox */
  path: string;
  /** unpack it (when its name is a recognised archive) into `extractTo`, relative to the sandbox */
  extract: boolean;
  extractTo: string;
  /** keep the archive after unpacking (Mesos does; SingularityExecutor does not) */
  keepArchive: boolean;
  executable: boolean;
  /** keep the download in the server's artifact cache for later tasks */
  cache: boolean;
  /** lower-case hex md5 the bytes must have */
  md5?: string;
  /** bytes the file must have */
  size?: number;
}

/** The artifact's name in the sandbox: outputFile, else the URL's last path segment. */
export function artifactFileName(a: Pick<MesosArtifact, 'uri' | 'outputFile'>): string {
  if (a.outputFile) return a.outputFile;
  let name = '';
  try {
    name = decodeURIComponent(new URL(a.uri).pathname.split('/').filter(Boolean).at(-1) ?? '');
  } catch {
    name = '';
  }
  // A URL whose path ends in / (or names nothing safe) still needs a file name.
  return name === '' || name === '.' || name === '..' || name.includes('/') ? 'artifact' : name;
}

const join = (folder: string | undefined, file: string) => (folder ? `${folder.replace(/\/+$/, '')}/${file}` : file);

/** Every artifact of a deploy, in Singularity's order: uris, then the executor's embedded and external ones. */
export function launchArtifacts(deploy: Deploy): ArtifactFetch[] {
  const out: ArtifactFetch[] = [];
  for (const u of deploy.uris ?? []) {
    // As Mesos' fetcher: the file at outputFile (or its own name), an archive unpacked into the sandbox.
    out.push({
      url: u.uri,
      path: artifactFileName(u),
      extract: u.extract,
      extractTo: '',
      keepArchive: true,
      executable: u.executable,
      cache: u.cache,
    });
  }
  const e = deploy.executorData;
  for (const a of e?.embeddedArtifacts ?? []) {
    out.push({
      content: a.content ?? '',
      path: join(a.targetFolderRelativeToTask, a.filename),
      extract: false,
      extractTo: a.targetFolderRelativeToTask ?? '',
      keepArchive: true,
      executable: false,
      cache: false,
      ...(a.md5sum ? { md5: a.md5sum } : {}),
    });
  }
  for (const a of e?.externalArtifacts ?? []) {
    // SingularityExecutor unpacks a .tar.gz into the target folder and copies anything else there.
    const tarball = a.filename.endsWith('.tar.gz');
    out.push({
      url: a.url ?? '',
      path: join(a.targetFolderRelativeToTask, a.filename),
      extract: tarball,
      extractTo: a.targetFolderRelativeToTask ?? '',
      keepArchive: !tarball,
      executable: false,
      cache: true,
      ...(a.md5sum ? { md5: a.md5sum } : {}),
      ...(a.filesize !== undefined ? { size: a.filesize } : {}),
    });
  }
  return out;
}

/**
 * The command a task runs: the deploy's command and arguments; without them,
 * `executorData.cmd` followed by its `extraCmdLineArgs`, joined with spaces and run by a shell
 * as SingularityExecutor does.
 */
export function launchCommand(deploy: Deploy): { command?: string; arguments?: string[] } {
  if (deploy.command !== undefined || deploy.arguments?.length) {
    return {
      ...(deploy.command !== undefined ? { command: deploy.command } : {}),
      ...(deploy.arguments !== undefined ? { arguments: deploy.arguments } : {}),
    };
  }
  const e = deploy.executorData;
  if (e && e.cmd.trim() !== '') return { command: [e.cmd, ...e.extraCmdLineArgs].join(' ') };
  return {};
}

/** Exit codes that make a task's end TASK_FINISHED rather than TASK_FAILED. */
export function successfulExitCodes(deploy: Deploy | undefined): readonly number[] {
  if (deploy?.successfulExitCodes?.length) return deploy.successfulExitCodes;
  if (deploy?.executorData?.successfulExitCodes.length) return deploy.executorData.successfulExitCodes;
  return [0];
}

/** SIGTERM → SIGKILL grace for the deploy's tasks: executorData's, else the server's. */
export function killGraceMillis(deploy: Deploy | undefined, serverDefault: number): number {
  return deploy?.executorData?.sigKillProcessesAfterMillis ?? serverDefault;
}
