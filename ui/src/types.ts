// The shapes of the gateway's OpenAI-compatible answers that the pages read.

export interface Page<T> {
  object: "list";
  data: T[];
  has_more: boolean;
  last_id: string;
}

export type JobStatus =
  | "validating_files"
  | "queued"
  | "running"
  | "succeeded"
  | "failed"
  | "cancelled"
  | "paused";

export const FINISHED: JobStatus[] = ["succeeded", "failed", "cancelled"];

export interface Job {
  id: string;
  created_at: number;
  finished_at: number | null;
  estimated_finish: number | null;
  status: JobStatus;
  model: string;
  fine_tuned_model: string | null;
  training_file: string;
  validation_file: string | null;
  result_files: string[];
  trained_tokens: number | null;
  seed: number;
  hyperparameters: { n_epochs: number | "auto"; batch_size: number | "auto"; learning_rate_multiplier: number | "auto" };
  error: { code: string; message: string; param: string | null } | null;
  user_provided_suffix: string | null;
  method: { type: string } & Record<string, { hyperparameters: Record<string, number | string> }>;
}

export interface Metrics {
  step?: number;
  total_steps?: number;
  epoch?: number;
  train_loss?: number;
  train_mean_token_accuracy?: number;
  valid_loss?: number;
  valid_mean_token_accuracy?: number;
  full_valid_loss?: number;
  full_valid_mean_token_accuracy?: number;
}

export interface JobEvent {
  id: string;
  created_at: number;
  level: "info" | "warn" | "error";
  message: string;
  type: "message" | "metrics";
  data: Metrics;
}

export interface Checkpoint {
  id: string;
  created_at: number;
  fine_tuned_model_checkpoint: string;
  step_number: number;
  metrics: Metrics;
}

export interface FileObject {
  id: string;
  bytes: number;
  created_at: number;
  filename: string;
  purpose: string;
  status: "uploaded" | "processed" | "error";
  status_details?: string;
}

export interface Model {
  id: string;
  created: number;
  owned_by: string;
}

export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool";
  content: string | null;
}

// Webhook endpoints (services/gateway/webhooks/protocol.py): OpenAI's shape plus Tailor's
// delivery counts and delivery log.

/** The event types an endpoint may subscribe to (services/trainer/webhooks/events.py). */
export const WEBHOOK_EVENT_TYPES = [
  "fine_tuning.job.succeeded",
  "fine_tuning.job.failed",
  "fine_tuning.job.cancelled",
  "eval.run.succeeded",
  "eval.run.failed",
  "eval.run.canceled",
];

export interface WebhookEndpoint {
  id: string;
  created_at: number;
  updated_at: number;
  name: string;
  url: string;
  event_types: string[];
  signing_secret_hint: string;
  delivery_stats: { pending: number; delivered: number; failed: number };
}

/** Answered by create and rotate_secret only: the one time the secret is shown. */
export interface WebhookEndpointWithSecret extends WebhookEndpoint {
  signing_secret: string;
}

export interface DeliveryAttempt {
  id: string;
  event_id: string;
  event_type: string;
  attempted_at: number;
  status_code: number | null;
  error: string | null;
  state: "pending" | "delivered" | "failed";
  next_attempt_at: number | null;
}

// Evals, in OpenAI's shapes (openai-python's types/eval_*.py and types/evals/).

export interface TestingCriterion {
  name: string;
  type: string;
  pass_threshold?: number;
}

export interface Eval {
  id: string;
  created_at: number;
  name: string;
  metadata: Record<string, string> | null;
  testing_criteria: TestingCriterion[];
}

export type EvalRunStatus = "queued" | "in_progress" | "completed" | "failed" | "canceled";

export const RUN_FINISHED: string[] = ["completed", "failed", "canceled"];

export interface EvalRun {
  id: string;
  eval_id: string;
  name: string;
  model: string;
  status: EvalRunStatus;
  created_at: number;
  result_counts: { total: number; errored: number; failed: number; passed: number };
  per_testing_criteria_results: { testing_criteria: string; passed: number; failed: number }[];
  error: { code: string; message: string } | null;
  report_url: string;
}

export interface EvalMessage {
  role: string;
  content: string | null;
}

export interface OutputItem {
  id: string;
  created_at: number;
  datasource_item_id: number;
  datasource_item: Record<string, unknown>;
  status: string;
  results: { name: string; type?: string; score: number; passed: boolean }[];
  sample: {
    input: EvalMessage[];
    output: EvalMessage[];
    finish_reason: string;
    model: string;
    error: { code: string; message: string } | null;
  };
}
