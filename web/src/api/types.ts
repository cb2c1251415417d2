// Shapes of the control-plane API. They come from api/openapi.json (generated from the Rust types
// in crates/clarateach-core) through `npm run gen:api`: edit the Rust side, never these aliases'
// targets. `npm run check:api` fails when src/api/schema.gen.ts drifts from the spec.

import type { components } from './schema.gen';

type Schemas = components['schemas'];

export type WorkshopStatus = Schemas['WorkshopStatus'];
export type SeatState = Schemas['SeatState'];
export type Limits = Schemas['Limits'];
export type NetworkPolicy = Schemas['NetworkPolicy'];
export type Workshop = Schemas['Workshop'];
export type Seat = Schemas['Seat'];
export type JoinRequest = Schemas['JoinRequest'];
export type JoinResponse = Schemas['JoinResponse'];
export type FileInfo = Schemas['FileInfo'];
export type ReadFileResponse = Schemas['ReadFileResponse'];
export type CreateWorkshopRequest = Schemas['CreateWorkshopRequest'];
export type ErrorBody = Schemas['ErrorBody'];
export type TerminalClientMessage = Schemas['TerminalClientMessage'];
export type TerminalServerMessage = Schemas['TerminalServerMessage'];
export type CommandRecord = Schemas['CommandRecord'];
export type HelpRequest = Schemas['HelpRequest'];
export type HelpStatusResponse = Schemas['HelpStatusResponse'];
export type ScreenFrame = Schemas['ScreenFrame'];
export type Template = Schemas['Template'];
export type SeatImage = Schemas['SeatImage'];
export type LearnerInfo = Schemas['LearnerInfo'];
export type Preview = Schemas['Preview'];
export type PreviewList = Schemas['PreviewList'];
export type PreviewOpen = Schemas['PreviewOpen'];
export type Announcement = Schemas['Announcement'];
export type AnnouncementList = Schemas['AnnouncementList'];
export type Spotlight = Schemas['Spotlight'];
export type SpotlightState = Schemas['SpotlightState'];
export type LearnerEvent = Schemas['LearnerEvent'];
export type RecordingInfo = Schemas['RecordingInfo'];
export type RecordingList = Schemas['RecordingList'];
