// The fake kube-apiserver as a process of its own, for scripts/container-test.sh: the controller in a
// container reaches it across the Docker bridge.
//   node dist/test/support/fakeKubeServer.js --listen 172.17.0.1 --server https://host.docker.internal \
//     --kubeconfig /tmp/x/kubeconfig
// Listens on --listen (a free port), writes a kubeconfig naming --server with that port (tls-server-name
// localhost, the name its certificate holds), then prints one JSON line per event on stdout:
//   {"event":"listening","url":…,"kubeconfig":…}, then {"event":"dry-run"|"create","name":…} per Job.
// Stops on SIGTERM or SIGINT.
import { chmodSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { FakeKube } from './fakeKube.js';

const { values } = parseArgs({
  options: {
    listen: { type: 'string', default: '127.0.0.1' },
    server: { type: 'string' },
    kubeconfig: { type: 'string' },
  },
});

const print = (line: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(line)}\n`);

const kube = await FakeKube.start({ host: values.listen });
const port = new URL(kube.url).port;
let kubeconfig = kube.kubeconfigPath;
if (values.kubeconfig) {
  kubeconfig = values.kubeconfig;
  const server = values.server ? `${values.server.replace(/:\d+$/, '').replace(/\/$/, '')}:${port}` : kube.url;
  kube.writeKubeconfig(kubeconfig, server, values.server ? 'localhost' : undefined);
  // The image runs as uid 1000: a bind-mounted kubeconfig must be readable by it (this one holds a test token).
  chmodSync(kubeconfig, 0o644);
}
print({ event: 'listening', url: kube.url, kubeconfig });

// The fake records requests in arrays (its test hooks); report what arrives, every 100 ms.
let dryRuns = 0;
let creates = 0;
const report = setInterval(() => {
  for (; dryRuns < kube.dryRuns.length; dryRuns++)
    print({ event: 'dry-run', name: kube.dryRuns[dryRuns]?.metadata?.name });
  for (; creates < kube.creates.length; creates++) print({ event: 'create', name: kube.creates[creates]?.name });
}, 100);

const stop = (): void => {
  clearInterval(report);
  void kube.stop().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
