// Deploys of the example service as Docker containers (the test image's CMD runs it), and the
// `serve` flags of a Docker host for a private dockerd.
import type { DeployBody, DeployInput } from '../../src/api/client.ts';
import { LABELS } from '../../src/runtimes/docker/container-config.ts';
import type { Dockerd } from './dockerd.ts';
import { FAST_HEALTHCHECK } from './example-service.ts';
import type { PortRange } from './ports.ts';

/** `--docker-host` for `dockerd`, handing out `ports`. */
export function dockerHostArgs(dockerd: Dockerd, ports: PortRange, id = 'd1'): string[] {
  return ['--docker-host', `id=${id},endpoint=${dockerd.endpoint},ports=${ports.from}-${ports.to}`];
}

/** A deploy of the example service in the test image, on host networking with one port. */
export function dockerDeploy(requestId: string, deployId: string, image: string, deploy: Partial<DeployInput> = {}): DeployBody {
  return {
    deploy: {
      requestId,
      id: deployId,
      containerInfo: { type: 'DOCKER', docker: { image, network: 'HOST' } },
      env: { VERSION: deployId },
      resources: { cpus: 0.1, memoryMb: 64, numPorts: 1 },
      healthcheck: { ...FAST_HEALTHCHECK },
      deployHealthTimeoutSeconds: 30,
      ...deploy,
    },
  };
}

/** Containers a Fledge made on this daemon, by task id (label fledge.task). */
export async function containersByTask(dockerd: Dockerd): Promise<Map<string, { id: string; state: string }[]>> {
  const out = new Map<string, { id: string; state: string }[]>();
  for (const c of await dockerd.client.listContainers([LABELS.task])) {
    const task = c.Labels[LABELS.task] ?? '';
    out.set(task, [...(out.get(task) ?? []), { id: c.Id, state: c.State }]);
  }
  return out;
}
