import { describe, expect, it } from 'vitest';
import type { Deploy } from '../../core/model.ts';
import { parseInput, schemas } from './index.ts';

const base = { requestId: 'web', id: 'v1' };
const parse = (deploy: Record<string, unknown>, containers = true) => parseInput(schemas.deploy(containers), deploy);
const ok = (deploy: Record<string, unknown>, containers = true): { value: Deploy; warnings: string[] } => {
  const r = parse(deploy, containers);
  if (!r.ok) throw new Error(r.message);
  return r;
};
const docker = (fields: Record<string, unknown>, more: Record<string, unknown> = {}) => ({
  ...base,
  containerInfo: { type: 'DOCKER', docker: { image: 'app:1', ...fields }, ...more },
});

describe('deploy schema: containerInfo', () => {
  it("reads Singularity's Docker example with BRIDGE networking and FROM_OFFER host ports", () => {
    // Docs/getting-started/basic-examples.md, "Docker Service with Bridge Networking"
    const r = ok({
      requestId: 'singularity-test-service',
      id: '4',
      containerInfo: {
        type: 'DOCKER',
        docker: {
          network: 'BRIDGE',
          image: 'hubspot/singularity-test-service:1.0',
          portMappings: [
            { containerPortType: 'LITERAL', containerPort: 8081, hostPortType: 'FROM_OFFER', hostPort: 0, protocol: 'tcp' },
            { containerPortType: 'LITERAL', containerPort: 8080, hostPortType: 'FROM_OFFER', hostPort: 1, protocol: 'tcp' },
          ],
        },
      },
      resources: { cpus: 0.1, memoryMb: 128, numPorts: 2 },
      healthcheck: { uri: '/healthcheck' },
    });
    expect(r.value.containerInfo?.docker?.portMappings).toEqual([
      { containerPortType: 'LITERAL', containerPort: 8081, hostPortType: 'FROM_OFFER', hostPort: 0, protocol: 'tcp' },
      { containerPortType: 'LITERAL', containerPort: 8080, hostPortType: 'FROM_OFFER', hostPort: 1, protocol: 'tcp' },
    ]);
    expect(r.warnings).toEqual([]);
  });

  it("reads what Singularity's UI sends: numbers and booleans as text, volumes under docker, type MESOS when no container", () => {
    const r = ok(
      docker({
        network: 'BRIDGE',
        privileged: 'true',
        forcePullImage: 'false',
        portMappings: [{ containerPortType: 'LITERAL', containerPort: '8080', hostPortType: 'FROM_OFFER', hostPort: '0', protocol: 'tcp' }],
        dockerParameters: [{ key: 'env', value: 'A=1' }],
        volumes: [{ containerPath: '/data', hostPath: '/srv/data', mode: 'RW' }],
      }),
    );
    expect(r.value.containerInfo).toEqual({
      type: 'DOCKER',
      docker: {
        image: 'app:1',
        network: 'BRIDGE',
        privileged: true,
        forcePullImage: false,
        portMappings: [{ containerPortType: 'LITERAL', containerPort: 8080, hostPortType: 'FROM_OFFER', hostPort: 0, protocol: 'tcp' }],
        dockerParameters: [{ key: 'env', value: 'A=1' }],
      },
      volumes: [{ containerPath: '/data', hostPath: '/srv/data', mode: 'RW' }],
    });
    expect(r.warnings).toEqual([
      'deploy.containerInfo.docker.privileged: read the string "true" as the boolean true (as Singularity does)',
      'deploy.containerInfo.docker.forcePullImage: read the string "false" as the boolean false (as Singularity does)',
      'deploy.containerInfo.docker.portMappings[0].containerPort: read the string "8080" as the number 8080 (Singularity reads numeric strings as numbers)',
      'deploy.containerInfo.docker.portMappings[0].hostPort: read the string "0" as the number 0 (Singularity reads numeric strings as numbers)',
      'deploy.containerInfo.docker.volumes: read as containerInfo.volumes (where Singularity reads them)',
    ]);

    const mesos = ok({ ...base, command: 'run.sh', containerInfo: { type: 'MESOS' } }, false);
    expect(mesos.value.containerInfo).toEqual({ type: 'MESOS' });
  });

  it('reads a deploy as Singularity serialises it: nulls, the parameters map beside dockerParameters', () => {
    const r = ok({
      ...base,
      containerInfo: {
        type: 'DOCKER',
        volumes: [{ containerPath: '/etc/x', hostPath: '/etc/x', mode: null, source: null }],
        docker: {
          image: 'app:1',
          privileged: false,
          network: 'HOST',
          portMappings: [],
          forcePullImage: false,
          parameters: { 'cap-add': 'SYS_PTRACE' },
          dockerParameters: [{ key: 'cap-add', value: 'SYS_PTRACE' }],
        },
        mesos: null,
        networkInfos: null,
      },
    });
    expect(r.value.containerInfo?.volumes).toEqual([{ containerPath: '/etc/x', hostPath: '/etc/x', mode: 'RO' }]);
    expect(r.value.containerInfo?.docker?.dockerParameters).toEqual([{ key: 'cap-add', value: 'SYS_PTRACE' }]);
    expect(r.warnings).toEqual([]);
  });

  it('uses the deprecated parameters map when dockerParameters is absent, and warns when both differ', () => {
    expect(ok(docker({ parameters: { env: 'A=1' } })).value.containerInfo?.docker?.dockerParameters).toEqual([
      { key: 'env', value: 'A=1' },
    ]);
    const both = ok(docker({ parameters: { env: 'A=1' }, dockerParameters: [{ key: 'env', value: 'B=2' }] }));
    expect(both.value.containerInfo?.docker?.dockerParameters).toEqual([{ key: 'env', value: 'B=2' }]);
    expect(both.warnings).toEqual([
      'deploy.containerInfo.docker.parameters: dockerParameters is given too and wins (as in Singularity); these parameters are not used',
    ]);
  });

  it('reads a bare string docker parameter as a flag (SingularityDockerParameter.fromString)', () => {
    expect(ok(docker({ dockerParameters: ['read-only'] })).value.containerInfo?.docker?.dockerParameters).toEqual([
      { key: 'read-only', value: '' },
    ]);
  });

  it('keeps a named Docker volume source, with %i left for the runtime', () => {
    const r = ok(
      docker(
        {},
        {
          volumes: [
            { containerPath: '/data', mode: 'RW', source: { type: 'DOCKER_VOLUME', dockerVolume: { name: 'data-%i', driver: 'local' } } },
          ],
        },
      ),
    );
    expect(r.value.containerInfo?.volumes).toEqual([
      { containerPath: '/data', mode: 'RW', source: { type: 'DOCKER_VOLUME', dockerVolume: { name: 'data-%i', driver: 'local' } } },
    ]);
  });

  it('runs a Docker deploy without command (the image CMD), and warns that a command with spaces has no shell', () => {
    expect(ok(docker({})).warnings).toEqual([]);
    expect(ok({ ...docker({}), command: 'node /app/x.mjs' }).warnings).toEqual([
      "deploy.command: runs as the container's executable, without a shell (Singularity's rule for containers): set shell: true to run it with /bin/sh -c, or give the words as arguments",
    ]);
    const shell = ok({ ...docker({}), command: 'node /app/x.mjs', shell: true });
    expect(shell.value.shell).toBe(true);
    expect(shell.warnings).toEqual([]);
  });

  it('does not read shell for processes, and says so', () => {
    const r = ok({ ...base, command: 'run.sh', shell: true }, false);
    expect(r.value.shell).toBeUndefined();
    expect(r.value.extra).toEqual({ shell: true });
    expect(r.warnings).toEqual([
      'deploy.shell: only read for Docker containers; processes run arguments without a shell, else command with /bin/sh -c',
    ]);
  });

  it.each([
    [
      'DOCKER without docker',
      { ...base, containerInfo: { type: 'DOCKER' } },
      'deploy.containerInfo.docker',
      'is required with type DOCKER (at least docker.image)',
    ],
    ['no image', docker({ image: undefined }), 'deploy.containerInfo.docker.image', 'is required'],
    ['unknown docker field', docker({ imageName: 'x' }), 'deploy.containerInfo.docker.imageName', 'unknown field'],
    ['bad network', docker({ network: 'OVERLAY' }), 'deploy.containerInfo.docker.network', 'must be one of HOST, BRIDGE, NONE'],
    [
      'portMappings with HOST',
      docker({ portMappings: [{ containerPort: 80, hostPort: 8080 }] }),
      'deploy.containerInfo.docker.portMappings[0]',
      "apply with network BRIDGE only (this deploy's network is HOST)",
    ],
    [
      'FROM_OFFER index past numPorts',
      {
        ...docker({ network: 'BRIDGE', portMappings: [{ containerPort: 80, hostPortType: 'FROM_OFFER', hostPort: 1 }] }),
        resources: { numPorts: 1 },
      },
      'deploy.containerInfo.docker.portMappings[0].hostPort',
      'is a FROM_OFFER index and must be < resources.numPorts (1)',
    ],
    [
      'literal host port twice',
      docker({
        network: 'BRIDGE',
        portMappings: [
          { containerPort: 80, hostPort: 8080 },
          { containerPort: 81, hostPort: 8080 },
        ],
      }),
      'deploy.containerInfo.docker.portMappings[1].hostPort',
      'host port 8080 is mapped twice',
    ],
    [
      'protocol sctp',
      docker({ network: 'BRIDGE', portMappings: [{ containerPort: 80, hostPort: 8080, protocol: 'sctp' }] }),
      'deploy.containerInfo.docker.portMappings[0].protocol',
      'must be tcp or udp',
    ],
    [
      'docker run option Fledge sets itself',
      docker({ dockerParameters: [{ key: 'memory', value: '1g' }] }),
      'deploy.containerInfo.docker.dockerParameters[0]',
      'memory is not accepted as a docker parameter: set resources.memoryMb: Fledge reserves it on the host and makes it the limit',
    ],
    [
      'unknown docker run option',
      docker({ parameters: { gpus: 'all' } }),
      'deploy.containerInfo.docker.parameters.gpus',
      expect.stringMatching(/^gpus is not a docker run option Fledge translates \(supported: add-host, cap-add, .*\)$/),
    ],
    [
      'malformed ulimit',
      docker({ dockerParameters: [{ key: 'ulimit', value: 'nofile' }] }),
      'deploy.containerInfo.docker.dockerParameters[0]',
      'ulimit must be name=soft[:hard]',
    ],
    [
      'relative hostPath',
      docker({}, { volumes: [{ containerPath: '/data', hostPath: 'data' }] }),
      'deploy.containerInfo.volumes[0].hostPath',
      'must be an absolute path',
    ],
    [
      'volume mode',
      docker({}, { volumes: [{ containerPath: '/data', mode: 'RX' }] }),
      'deploy.containerInfo.volumes[0].mode',
      'must be one of RO, RW',
    ],
    [
      'volumes in both places',
      docker({ volumes: [{ containerPath: '/a' }] }, { volumes: [{ containerPath: '/b' }] }),
      'deploy.containerInfo.docker.volumes',
      'give volumes in containerInfo.volumes or in containerInfo.docker.volumes, not both',
    ],
    [
      'MESOS with docker',
      { ...base, command: 'x', containerInfo: { type: 'MESOS', docker: { image: 'a' } } },
      'deploy.containerInfo.docker',
      'is given with type MESOS; set type DOCKER to run the image',
    ],
    [
      'MESOS image',
      { ...base, command: 'x', containerInfo: { type: 'MESOS', mesos: { image: { type: 'DOCKER', docker: { name: 'a' } } } } },
      'deploy.containerInfo.mesos.image',
      'Mesos container images are not supported; use type DOCKER with docker.image',
    ],
    [
      'memory below Docker minimum',
      { ...docker({}), resources: { memoryMb: 4 } },
      'deploy.resources.memoryMb',
      "must be at least 6 for a Docker container (Docker's minimum)",
    ],
    [
      'shell without command',
      { ...docker({}), shell: true },
      'deploy.shell',
      'shell: true needs command (it runs command with /bin/sh -c)',
    ],
    [
      'entrypoint with shell',
      { ...docker({ dockerParameters: [{ key: 'entrypoint', value: '/x' }] }), command: 'a', shell: true },
      'deploy.containerInfo.docker.dockerParameters',
      'entrypoint conflicts with shell: true (which runs command with /bin/sh -c)',
    ],
  ])('refuses %s with a 400 naming the field', (_name, deploy, field, rule) => {
    const r = parse(deploy as Record<string, unknown>);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.details).toContainEqual({ field, rule });
  });
});
