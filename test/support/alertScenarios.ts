// Scenarios for `promtool test rules` on deploy/monitoring/prometheus-rules.yaml (test/alerts.test.ts): input
// series in promtool's expanding notation ('0x10' is eleven zeros, '0+60x10' climbs by 60 per 1 min step), as
// the service writes them (the test checks each against a scrape), and whether the alert fires at evalTime.
// promtool's time() is 0 at the first step and 60 per step after: a `*_timestamp_seconds` series that keeps up
// with it ('0+60x20') is fresh at every scrape, one that stops climbing grows old.

export interface AlertScenario {
  name: string;
  alert: string;
  series: Record<string, string>;
  evalTime: string;
  fires: boolean;
  /** Labels the alert carries besides the rule's own (which controller it is about). */
  labels?: Record<string, string>;
}

/** Two controllers scraped as one job, told apart by the training_name label every series carries. */
const of = (name: string, series: Record<string, string>) =>
  Object.fromEntries(
    Object.entries(series).map(([s, v]) => {
      const [metric, labels] = s.split('{');
      return [`${metric}{training_name="${name}"${labels ? `,${labels}` : '}'}`, v];
    }),
  );

const healthy = {
  training_controller_listener_connected: '1x20',
  training_controller_listener_last_alive_timestamp_seconds: '0+60x20',
  training_controller_cluster_reachable: '1x20',
  training_controller_cluster_last_answer_timestamp_seconds: '0+60x20',
};

const waitingToTrain = {
  training_controller_pending_annotations: '50x20',
  training_controller_threshold: '50x20',
  training_controller_open_runs: '0x20',
  'training_controller_dispatch_skips_total{reason="backoff"}': '0x20',
};

/** Written by Prometheus for each scrape target, not by the service (1: the scrape worked). */
export const PROMETHEUS_SERIES = ['up{job="training-controller"}'];

export const ALERT_SCENARIOS: AlertScenario[] = [
  {
    name: 'the controller down (crash-looping: every scrape fails) for 6 min',
    alert: 'TrainingControllerDown',
    series: { 'up{job="training-controller"}': '1 0x10' },
    evalTime: '7m',
    fires: true,
  },
  {
    // Not scheduled, or a scrape configuration that never finds it: no `up` series at all.
    name: 'the controller never scraped',
    alert: 'TrainingControllerDown',
    series: { training_controller_threshold: '_x10' },
    evalTime: '6m',
    fires: true,
  },
  {
    // CrashLoopBackOff at its cap: up for one scrape, then down 5 min, over and over (found by review).
    name: 'the controller crash-looping, each start surviving one scrape',
    alert: 'TrainingControllerDown',
    series: { 'up{job="training-controller"}': '1 0 0 0 0 0 1 0 0 0 0 0 1 0 0 0 0 0 1 0 0 0 0 0 1 0 0' },
    evalTime: '24m',
    fires: true,
  },
  {
    name: 'the controller restarting once (down for 2 min)',
    alert: 'TrainingControllerDown',
    series: { 'up{job="training-controller"}': '1 0 0 1x10' },
    evalTime: '10m',
    fires: false,
  },
  {
    name: 'a failed run',
    alert: 'TrainingRunFailed',
    series: { 'training_controller_runs_finished_total{state="failed"}': '0 0 1x10' },
    evalTime: '5m',
    fires: true,
  },
  {
    name: 'a lost run',
    alert: 'TrainingRunFailed',
    series: { 'training_controller_runs_finished_total{state="lost"}': '0 0 1x10' },
    evalTime: '5m',
    fires: true,
  },
  {
    name: 'runs succeed',
    alert: 'TrainingRunFailed',
    series: {
      'training_controller_runs_finished_total{state="succeeded"}': '0 1 2 3x10',
      'training_controller_runs_finished_total{state="failed"}': '0x12',
    },
    evalTime: '5m',
    fires: false,
  },
  {
    name: 'pending at the threshold, no run, no back-off, for 12 min',
    alert: 'TrainingNotStarting',
    series: waitingToTrain,
    evalTime: '12m',
    fires: true,
  },
  {
    name: 'pending at the threshold while a run trains',
    alert: 'TrainingNotStarting',
    series: { ...waitingToTrain, training_controller_open_runs: '1x20' },
    evalTime: '12m',
    fires: false,
  },
  {
    name: 'pending at the threshold during the back-off after a failure',
    alert: 'TrainingNotStarting',
    series: { ...waitingToTrain, 'training_controller_dispatch_skips_total{reason="backoff"}': '0+1x20' },
    evalTime: '12m',
    fires: false,
  },
  {
    name: 'below the threshold',
    alert: 'TrainingNotStarting',
    series: { ...waitingToTrain, training_controller_pending_annotations: '49x20' },
    evalTime: '12m',
    fires: false,
  },
  {
    // Row-level security hides the rows: the pending gauge keeps its last value (0), the service refuses to count.
    name: 'not ready for 12 min, pending reads 0',
    alert: 'TrainingControllerNotReady',
    series: { ...healthy, training_controller_ready: '1 0x12', training_controller_pending_annotations: '0x13' },
    evalTime: '12m',
    fires: true,
  },
  {
    name: 'not ready for 3 min (a database restart), then ready',
    alert: 'TrainingControllerNotReady',
    series: { ...healthy, training_controller_ready: '1 0x3 1x10' },
    evalTime: '12m',
    fires: false,
  },
  {
    name: 'LISTEN reconnecting for 4 min',
    alert: 'TrainingControllerListenDown',
    series: { ...healthy, training_controller_listener_connected: '1 0x10' },
    evalTime: '4m',
    fires: true,
  },
  {
    name: 'LISTEN connected but its ping lost for 3 min',
    alert: 'TrainingControllerListenDown',
    series: { ...healthy, training_controller_listener_last_alive_timestamp_seconds: '0 60 60x10' },
    evalTime: '6m',
    fires: true,
  },
  {
    // The README's old advice: no notification for 20 min is what a healthy, gated service looks like.
    name: 'healthy LISTEN, no notification for 20 min',
    alert: 'TrainingControllerListenDown',
    series: { ...healthy, training_controller_last_notification_timestamp_seconds: '0x20' },
    evalTime: '20m',
    fires: false,
  },
  {
    name: 'API server failing for 6 min',
    alert: 'TrainingControllerApiServerUnreachable',
    series: { ...healthy, training_controller_cluster_reachable: '1 0x10' },
    evalTime: '6m',
    fires: true,
  },
  {
    name: 'API server silent (requests hang) for 10 min',
    alert: 'TrainingControllerApiServerUnreachable',
    series: { ...healthy, training_controller_cluster_last_answer_timestamp_seconds: '0x20' },
    evalTime: '11m',
    fires: true,
  },
  {
    name: 'API server answering',
    alert: 'TrainingControllerApiServerUnreachable',
    series: healthy,
    evalTime: '15m',
    fires: false,
  },
  {
    name: "the run's pod in CreateContainerConfigError for 20 min",
    alert: 'TrainingPodNotStarting',
    series: { 'training_controller_run_pod_waiting{reason="CreateContainerConfigError"}': '1x20' },
    evalTime: '20m',
    fires: true,
  },
  {
    name: "the run's pod waited 5 min for its image, then started",
    alert: 'TrainingPodNotStarting',
    series: { 'training_controller_run_pod_waiting{reason="ErrImagePull"}': '1x5 _x15' },
    evalTime: '20m',
    fires: false,
  },
  // Found by review: with two controllers in one job, max() over both fired only when both were broken.
  {
    name: 'two controllers: ranker not ready for 15 min, detector ready',
    alert: 'TrainingControllerNotReady',
    series: {
      ...of('ranker', { training_controller_ready: '0x20' }),
      ...of('detector', { training_controller_ready: '1x20' }),
    },
    evalTime: '15m',
    fires: true,
    labels: { training_name: 'ranker' },
  },
  {
    name: 'two controllers: ranker waiting to train for 15 min, detector training',
    alert: 'TrainingNotStarting',
    series: {
      ...of('ranker', waitingToTrain),
      ...of('detector', { ...waitingToTrain, training_controller_open_runs: '1x20' }),
    },
    evalTime: '15m',
    fires: true,
    labels: { training_name: 'ranker' },
  },
  {
    name: "two controllers: ranker's LISTEN down for 4 min, detector's up",
    alert: 'TrainingControllerListenDown',
    series: {
      ...of('ranker', { ...healthy, training_controller_listener_connected: '1 0x10' }),
      ...of('detector', healthy),
    },
    evalTime: '4m',
    fires: true,
    labels: { training_name: 'ranker' },
  },
];
