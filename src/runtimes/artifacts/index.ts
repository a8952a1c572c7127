// Artifacts fetched into task sandboxes, for every runtime (fetcher.ts, archive.ts).
export { ArtifactError, ArtifactFetcher, type ArtifactFetcherOptions } from './fetcher.ts';
