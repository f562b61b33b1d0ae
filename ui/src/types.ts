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
