// The microphone's AudioWorklet: mono at the context's rate in, 20 ms PCM16
// frames at 24 kHz out (resampled through a windowed-sinc low-pass, see
// voice-dsp.js), each with its RMS level in dBFS for the meter.
//
// Posts {type: "frame", pcm: ArrayBuffer, dbfs: number}; the buffer is transferred.

import { Resampler, floatToPcm16, rmsDbfs } from "./voice-dsp.js";

class VoiceCaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate = 24_000, frameMs = 20 } = options.processorOptions ?? {};
    this.resampler = new Resampler(sampleRate, targetRate);
    this.frame = new Float32Array(Math.round((targetRate * frameMs) / 1000));
    this.filled = 0;
    this.mono = new Float32Array(128);
    this.running = true;
    this.port.onmessage = (event) => {
      if (event.data?.type === "stop") this.running = false;
    };
  }

  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length) {
      const size = channels[0].length;
      if (this.mono.length !== size) this.mono = new Float32Array(size);
      // Mono: the mean of the channels (a mono mic arrives as one).
      this.mono.set(channels[0]);
      for (let c = 1; c < channels.length; c += 1) {
        for (let i = 0; i < size; i += 1) this.mono[i] += channels[c][i];
      }
      if (channels.length > 1) for (let i = 0; i < size; i += 1) this.mono[i] /= channels.length;
      this.resampler.push(this.mono);
      this.drain();
    }
    return this.running;
  }

  drain() {
    for (;;) {
      this.filled += this.resampler.pull(this.frame, this.filled);
      if (this.filled < this.frame.length) return;
      const pcm = floatToPcm16(this.frame);
      this.port.postMessage({ type: "frame", pcm, dbfs: rmsDbfs(this.frame) }, [pcm]);
      this.filled = 0;
    }
  }
}

registerProcessor("voice-capture", VoiceCaptureProcessor);
