/**
 * publishAudio: decode the audio, publish it as a temporary track, play it once the avatar has
 * subscribed (so its first syllable is not lost), then unpublish. The microphone is muted while it
 * plays and restored after, unless the user changed it meanwhile.
 */
import { RoomEvent, Track, type LocalTrackPublication, type Room } from "livekit-client";

import { audioBytes } from "./audio.js";
import type { AudioInput, AudioPlaybackHandle } from "./types.js";

export const PUBLISHED_AUDIO_TRACK_NAME = "atlas-publish-audio";

export interface PlaybackHooks {
  /** The mic was turned off (true) or restored (false) by the playback. */
  micChanged: (enabled: boolean) => void;
  subscribeTimeoutMs: number;
}

export async function playThroughRoom(
  room: Room,
  context: AudioContext,
  input: AudioInput,
  hooks: PlaybackHooks,
): Promise<AudioPlaybackHandle> {
  const buffer = await context.decodeAudioData(await audioBytes(input));
  if (context.state === "suspended") await context.resume();
  const destination = context.createMediaStreamDestination();
  const source = context.createBufferSource();
  source.buffer = buffer;
  source.connect(destination);
  const mediaTrack = destination.stream.getAudioTracks()[0];
  if (mediaTrack === undefined) throw new Error("publishAudio: no audio track from WebAudio");

  const local = room.localParticipant;
  const micWasOn = local.isMicrophoneEnabled;
  if (micWasOn) {
    await local.setMicrophoneEnabled(false);
    hooks.micChanged(false);
  }
  const publication = await local.publishTrack(mediaTrack, {
    name: PUBLISHED_AUDIO_TRACK_NAME,
    source: Track.Source.Unknown,
    dtx: false, // DTX would cut quiet syllables the avatar must mouth
    red: false,
  });
  await subscribedOrTimeout(room, publication, hooks.subscribeTimeoutMs);

  let done = false;
  let resolveFinished!: () => void;
  const finished = new Promise<void>((resolve) => {
    resolveFinished = resolve;
  });
  const finish = async (): Promise<void> => {
    if (done) return;
    done = true;
    source.disconnect();
    try {
      if (room.state === "connected") await local.unpublishTrack(mediaTrack, true);
      else mediaTrack.stop();
      // restore only what we changed, and only if the user did not turn the mic on meanwhile
      if (micWasOn && room.state === "connected" && !local.isMicrophoneEnabled) {
        await local.setMicrophoneEnabled(true);
        hooks.micChanged(true);
      }
    } finally {
      resolveFinished();
    }
  };
  source.onended = () => {
    void finish();
  };
  source.start();
  return {
    stop: () => {
      if (done) return;
      try {
        source.stop(); // fires onended -> finish
      } catch {
        void finish();
      }
    },
    finished,
  };
}

/** Resolve once a remote participant subscribed to `publication` (or after `timeoutMs`). */
function subscribedOrTimeout(
  room: Room,
  publication: LocalTrackPublication,
  timeoutMs: number,
): Promise<void> {
  return new Promise((resolve) => {
    const onSubscribed = (pub: LocalTrackPublication): void => {
      if (pub.trackSid === publication.trackSid) done();
    };
    const timer = setTimeout(() => done(), timeoutMs);
    function done(): void {
      clearTimeout(timer);
      room.off(RoomEvent.LocalTrackSubscribed, onSubscribed);
      resolve();
    }
    room.on(RoomEvent.LocalTrackSubscribed, onSubscribed);
  });
}
