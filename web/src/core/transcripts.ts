/** The transcript list: segments keyed by id, interim text replaced in place until final. */
import type { TranscriptMessage } from "./types.js";

export interface SegmentUpdate {
  id: string;
  role: TranscriptMessage["role"];
  text: string;
  final: boolean;
  timestamp: number;
}

/**
 * A new list with `update` applied. A segment seen before keeps its place and first timestamp;
 * a final segment is never turned back into an interim one (transcriptions can arrive twice,
 * once per transport, in either order).
 */
export function applySegment(
  messages: readonly TranscriptMessage[],
  update: SegmentUpdate,
): TranscriptMessage[] {
  const index = messages.findIndex((m) => m.id === update.id);
  if (index < 0) {
    if (update.text.trim() === "" && !update.final) return [...messages];
    return [...messages, { ...update }];
  }
  const old = messages[index]!;
  if (old.final && !update.final) return [...messages];
  const merged: TranscriptMessage = {
    ...old,
    text: update.text.length > 0 || update.final ? update.text : old.text,
    final: old.final || update.final,
  };
  const next = [...messages];
  next[index] = merged;
  return next;
}
