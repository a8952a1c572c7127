// The health watcher contract against each implementation.
import { healthContract } from './contract.case.ts';
import { createHealthWatcher } from './index.ts';
import { hc, startServer, type TestServer } from './test-servers.test-helper.ts';

const options = () => hc({ maxRetries: 0 });

healthContract('http', () => {
  const servers: TestServer[] = [];
  return {
    create: (onResult) => createHealthWatcher({ kind: 'http', now: Date.now, onResult }),
    async task(id, verdict) {
      const server = await startServer((_req, res) => res.writeHead(verdict === 'HEALTHY' ? 200 : 503).end(verdict));
      servers.push(server);
      return { task: { taskId: id, host: '127.0.0.1', ports: [server.port], runningAt: Date.now() }, options: options() };
    },
    quietMs: 200,
    cleanup: async () => {
      await Promise.all(servers.splice(0).map((s) => s.close()));
    },
  };
});

healthContract('fake', () => ({
  create(onResult) {
    const fake = createHealthWatcher({ kind: 'fake', onResult });
    fake.policy = (taskId) => (taskId.startsWith('bad') ? 'UNHEALTHY' : 'HEALTHY');
    return fake;
  },
  task: async (id) => ({ task: { taskId: id, host: 'local', ports: [], runningAt: Date.now() }, options: options() }),
  quietMs: 20,
  cleanup: async () => {},
}));
