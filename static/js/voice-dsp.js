// The voice page's signal processing, shared by its two AudioWorklets and
// plain enough to test on its own: resampling, PCM16 conversion, levels.
//
// The resampler is a Kaiser-windowed sinc evaluated at any fractional
// position (a table of the kernel at PHASES points per input sample, read
// with linear interpolation), so one class serves 48 kHz → 24 kHz for the
// microphone and 24 kHz → 48 kHz (or 44.1 kHz) for playback. Its cutoff sits
// at ROLLOFF of the lower Nyquist frequency: when decimating, the kernel
// widens by the rate ratio, so what would alias is filtered out first.

const HALF_TAPS = 24; // kernel half-width, in samples of the lower rate
const PHASES = 256;
const KAISER_BETA = 8.6; // about 85 dB of stopband
const ROLLOFF = 0.9;

function besselI0(x) {
  let sum = 1;
  let term = 1;
  for (let k = 1; k < 50; k += 1) {
    term *= (x / (2 * k)) ** 2;
    sum += term;
    if (term < sum * 1e-12) break;
  }
  return sum;
}

function sinc(x) {
  if (x === 0) return 1;
  const px = Math.PI * x;
  return Math.sin(px) / px;
}

/** Streaming resampler: `push` input samples, `pull` output samples; state carries across chunks. */
export class Resampler {
  constructor(inRate, outRate, { halfTaps = HALF_TAPS, phases = PHASES, beta = KAISER_BETA, rolloff = ROLLOFF } = {}) {
    this.inRate = inRate;
    this.outRate = outRate;
    this.step = inRate / outRate; // input samples per output sample
    const scale = Math.min(1, outRate / inRate);
    const cutoff = scale * rolloff; // as a fraction of the input Nyquist frequency
    this.half = Math.ceil(halfTaps / scale); // in input samples
    this.phases = phases;
    const size = this.half * phases + 2;
    this.kernel = new Float32Array(size);
    const norm = besselI0(beta);
    for (let k = 0; k < size; k += 1) {
      const x = k / phases;
      const r = x / this.half;
      this.kernel[k] = r >= 1 ? 0 : (cutoff * sinc(cutoff * x) * besselI0(beta * Math.sqrt(1 - r * r))) / norm;
    }
    this.buffer = new Float32Array(8192);
    this.reset();
  }

  /** Forget all input; the next output is the first of a new signal. */
  reset() {
    // `half` zeros of history: the first output is centred on the first input sample.
    this.buffer.fill(0, 0, this.half);
    this.length = this.half;
    this.time = this.half; // buffer position of the next output
  }

  /** Input samples needed before the first output (the filter's lookahead). */
  get latency() {
    return this.half;
  }

  push(samples) {
    const need = this.length + samples.length;
    if (need > this.buffer.length) {
      const bigger = new Float32Array(Math.max(need, this.buffer.length * 2));
      bigger.set(this.buffer.subarray(0, this.length));
      this.buffer = bigger;
    }
    this.buffer.set(samples, this.length);
    this.length = need;
  }

  /** How many outputs the input so far allows. */
  available() {
    const last = this.length - this.half - 1; // the highest position with a full right half
    if (last < this.time) return 0;
    return Math.floor((last - this.time) / this.step) + 1;
  }

  /** Write up to `count` outputs into `out` from `offset`; returns how many were written. */
  pull(out, offset = 0, count = out.length - offset) {
    const { buffer, kernel, phases, half, step } = this;
    let written = 0;
    let time = this.time;
    while (written < count && Math.floor(time) + half < this.length) {
      const base = Math.floor(time);
      const frac = time - base;
      let sum = 0;
      for (let j = 1 - half; j <= half; j += 1) {
        const position = Math.abs(frac - j) * phases;
        const index = Math.floor(position);
        if (index >= kernel.length - 1) continue;
        const weight = kernel[index] + (kernel[index + 1] - kernel[index]) * (position - index);
        sum += buffer[base + j] * weight;
      }
      out[offset + written] = sum;
      written += 1;
      time += step;
    }
    // Drop what no later output reads, now and then (not on every quantum).
    const keepFrom = Math.floor(time) - half + 1;
    if (keepFrom > 4096) {
      this.buffer.copyWithin(0, keepFrom, this.length);
      this.length -= keepFrom;
      time -= keepFrom;
    }
    this.time = time;
    return written;
  }

  /** Resample a whole chunk at once (pull everything the input allows). */
  process(samples) {
    this.push(samples);
    const out = new Float32Array(this.available());
    this.pull(out);
    return out;
  }
}

/** Float samples in [-1, 1] to PCM16 little-endian bytes (clipped, rounded): an ArrayBuffer. */
export function floatToPcm16(samples) {
  const bytes = new ArrayBuffer(samples.length * 2);
  const view = new DataView(bytes);
  for (let i = 0; i < samples.length; i += 1) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(2 * i, Math.round(s < 0 ? s * 32768 : s * 32767), true);
  }
  return bytes;
}

/** PCM16 little-endian bytes (an ArrayBuffer, even length) to float samples. */
export function pcm16ToFloat(bytes) {
  const view = new DataView(bytes);
  const samples = new Float32Array(bytes.byteLength >> 1);
  for (let i = 0; i < samples.length; i += 1) samples[i] = view.getInt16(2 * i, true) / 32768;
  return samples;
}

/** Root-mean-square level in dBFS (a full-scale sine is -3 dB); -Infinity for silence. */
export function rmsDbfs(samples) {
  if (!samples.length) return -Infinity;
  let sum = 0;
  for (let i = 0; i < samples.length; i += 1) sum += samples[i] * samples[i];
  const rms = Math.sqrt(sum / samples.length);
  return rms > 0 ? 20 * Math.log10(rms) : -Infinity;
}
