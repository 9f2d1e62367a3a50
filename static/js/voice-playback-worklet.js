// The assistant's voice: an AudioWorklet that plays queued 24 kHz PCM16
// frames gaplessly at the context's rate (resampled through voice-dsp.js),
// and says how much of each item has actually been heard.
//
// In:  {type: "audio", item, pcm: ArrayBuffer}  a frame of `item`, in order
//      {type: "flush"}                          drop everything queued, at once
// Out: {type: "played", item, samples}   about every 100 ms while playing
//      {type: "drained", item, samples}  once each time the queue runs dry
//      {type: "flushed", item, samples}  after a flush (what was heard before it)
// `samples` counts the 24 kHz samples of `item` heard so far.

import { Resampler, pcm16ToFloat } from "./voice-dsp.js";

const REPORT_MS = 100;
// A little audio is gathered before playing starts, so network jitter does not
// starve the first frames; a shorter item plays once this much time has passed.
const PREBUFFER_MS = 60;
const ITEMS_REMEMBERED = 8;

class VoicePlaybackProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { sourceRate = 24_000 } = options.processorOptions ?? {};
    this.sourceRate = sourceRate;
    this.resampler = new Resampler(sourceRate, sampleRate);
    this.prebufferSamples = Math.round((sourceRate * PREBUFFER_MS) / 1000);
    this.reportEvery = Math.round((sampleRate * REPORT_MS) / 1000);
    this.heard = new Map(); // item -> source samples played
    this.current = null; // the item heard last
    this.queue = []; // {item, samples}: Float32Array chunks at the source rate
    this.queued = 0; // source samples in `queue`
    this.restart();
    this.port.onmessage = (event) => this.receive(event.data);
  }

  /** Silence from here on: the filter, the timeline and the jitter buffer start over. */
  restart() {
    this.resampler.reset();
    this.fed = 0; // source samples pushed into the resampler since the restart
    this.playedTime = 0; // source time heard since the restart
    this.segments = []; // {item, start, end} over `fed`; item null for padding
    this.padded = false;
    this.buffering = true;
    this.waited = 0;
    this.sinceReport = 0;
  }

  receive(message) {
    if (message.type === "audio") {
      const samples = pcm16ToFloat(message.pcm);
      if (!samples.length) return;
      this.queue.push({ item: message.item, samples });
      this.queued += samples.length;
    } else if (message.type === "flush") {
      this.queue = [];
      this.queued = 0;
      this.restart();
      this.port.postMessage({ type: "flushed", ...this.where() });
    }
  }

  where() {
    return { item: this.current, samples: Math.round(this.heard.get(this.current) ?? 0) };
  }

  feed(samples, item) {
    this.resampler.push(samples);
    this.segments.push({ item, start: this.fed, end: this.fed + samples.length });
    this.fed += samples.length;
  }

  /** Credit the source time just played to the items it belongs to. */
  advance(outputs) {
    const from = this.playedTime;
    const to = from + outputs * this.resampler.step;
    this.playedTime = to;
    for (const segment of this.segments) {
      if (segment.item === null || segment.end <= from || segment.start >= to) continue;
      const overlap = Math.min(segment.end, to) - Math.max(segment.start, from);
      this.heard.set(segment.item, (this.heard.get(segment.item) ?? 0) + overlap);
      if (segment.item !== this.current) {
        if (this.current !== null) this.port.postMessage({ type: "played", ...this.where() });
        this.current = segment.item;
        this.forgetOldItems();
      }
    }
    while (this.segments.length && this.segments[0].end <= to) this.segments.shift();
  }

  forgetOldItems() {
    for (const item of this.heard.keys()) {
      if (this.heard.size <= ITEMS_REMEMBERED) break;
      if (item !== this.current) this.heard.delete(item);
    }
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    out.fill(0);
    if (this.buffering) {
      if (this.queued === 0) return true;
      this.waited += out.length;
      const waitedSource = (this.waited * this.sourceRate) / sampleRate;
      if (this.queued < this.prebufferSamples && waitedSource < this.prebufferSamples) return true;
      this.buffering = false;
    }
    while (this.resampler.available() < out.length && this.queue.length) {
      const chunk = this.queue.shift();
      this.queued -= chunk.samples.length;
      this.feed(chunk.samples, chunk.item);
      this.padded = false;
    }
    if (this.resampler.available() < out.length && !this.padded) {
      // Running dry: the filter's lookahead of silence lets the last samples play out.
      this.feed(new Float32Array(this.resampler.latency), null);
      this.padded = true;
    }
    const wrote = this.resampler.pull(out);
    this.advance(wrote);
    this.sinceReport += wrote;
    if (this.sinceReport >= this.reportEvery) {
      this.sinceReport = 0;
      this.port.postMessage({ type: "played", ...this.where() });
    }
    if (wrote < out.length) {
      this.port.postMessage({ type: "drained", ...this.where() });
      this.restart();
    }
    return true;
  }
}

registerProcessor("voice-playback", VoicePlaybackProcessor);
