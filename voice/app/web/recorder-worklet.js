// Taps one audio stream for the call page: the level of each 128-sample block, and (when asked)
// the samples themselves, posted to the page about every 20 ms with the audio clock's time.
class Tap extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.keep = Boolean(options.processorOptions && options.processorOptions.keep);
    this.levels = [];
    this.samples = [];
    this.start = null;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      if (this.start === null) this.start = currentTime;
      let sum = 0;
      for (let i = 0; i < channel.length; i++) sum += channel[i] * channel[i];
      this.levels.push(Math.sqrt(sum / channel.length));
      if (this.keep) this.samples.push(channel.slice());
      if (this.levels.length >= 8) {
        const block = 128 / sampleRate;
        this.port.postMessage({t: currentTime - (this.levels.length - 1) * block,
                               block, levels: this.levels, samples: this.samples});
        this.levels = [];
        this.samples = [];
      }
    }
    return true;
  }
}

registerProcessor("tap", Tap);
