// Shapes of the control-plane API, mirroring crates/clarateach-core/src/api.rs.

export type WorkshopStatus = 'created' | 'provisioning' | 'running' | 'stopping' | 'stopped' | 'failed';
export type SeatState = 'pending' | 'creating' | 'ready' | 'lost' | 'failed' | 'destroyed';

export interface Limits {
  memory_mb: number;
  pids: number;
  cpu_millis: number;
  disk_mb: number;
  network: "none" | "open" | { allow: string[] };
  /** Deprecated: network !== "none". */
  egress: boolean;
}

export interface Workshop {
  id: string;
  name: string;
  code: string;
  seats: number;
  status: WorkshopStatus;
  created_at: string;
  endpoint: string | null;
  image: string | null;
  limits: Limits;
  has_api_key: boolean;
  seats_ready: number;
  seats_joined: number;
}

export interface Seat {
  seat: number;
  state: SeatState;
  joined: boolean;
  name: string | null;
  agent_id: string | null;
  joined_at: string | null;
  last_activity_at: string | null;
}

export interface JoinRequest {
  code: string;
  odehash?: string;
  name?: string;
}

export interface JoinResponse {
  token: string;
  endpoint: string;
  odehash: string;
  seat: number;
  workshop_id: string;
  workshop_name: string;
}

export interface FileInfo {
  name: string;
  path: string;
  is_directory: boolean;
  size: number;
  modified_at: string;
}

export interface ReadFileResponse {
  content: string;
  encoding: 'utf-8' | 'base64' | string;
}

export interface CreateWorkshopRequest {
  name: string;
  seats: number;
  api_key?: string;
}

/** A finished shell command of a seat (OSC 133 marks). */
export interface CommandRecord {
  command: string;
  exit_code: number | null;
  finished_at: string;
}

export interface HelpRequest {
  id: string;
  workshop_id: string;
  seat: number;
  name: string | null;
  message: string | null;
  cwd: string | null;
  commands: CommandRecord[];
  open_file: string | null;
  status: 'open' | 'claimed' | 'resolved';
  created_at: string;
  claimed_by: string | null;
  claimed_at: string | null;
  resolved_at: string | null;
}

export interface HelpStatusResponse {
  request: HelpRequest | null;
  position: number | null;
}
