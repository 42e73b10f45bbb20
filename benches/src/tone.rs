//! Synthetic speech stand-ins: a sine tone per speaker, encoded with Opus, and a detector
//! that tells which tones a listener hears.
//!
//! Tests check *who* is heard, not only that bytes arrived: every synthetic peer publishes
//! its own frequency, and a listener decodes what it receives and measures, on 100 ms
//! windows, which candidate frequencies carry the signal (Goertzel on a Hann window).
//! Independent of any WebRTC stack, so the str0m load generator can reuse it.

use opus::{Application, Channels, Decoder, Encoder};

/// Sample rate of everything here (Opus' native rate, and the RTP clock of Opus).
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms Opus frame at [`SAMPLE_RATE`].
pub const FRAME_SAMPLES: usize = 960;
/// Samples in one analysis window (100 ms): 10 Hz resolution, and every multiple of 10 Hz
/// fits a whole number of periods.
pub const WINDOW_SAMPLES: usize = 4_800;
/// Largest Opus frame (120 ms) a decoder may be handed.
const MAX_DECODED_SAMPLES: usize = 5_760;
/// Largest encoded frame we let the encoder write.
const MAX_PACKET_BYTES: usize = 1_275;
/// Peak amplitude of generated tones (about -10 dBFS): loud, and far from clipping.
pub const TONE_AMPLITUDE: f32 = 0.3;
/// Windows quieter than this RMS hold no tone (silence, comfort noise, codec ringing).
pub const SILENCE_RMS: f64 = 0.01;
/// Share of a window's energy a candidate must hold to count as present. A lone tone
/// scores ≈ 1.0, two equal tones ≈ 0.5 each, a tone absent from the window ≈ 0.
pub const PRESENCE_RATIO: f64 = 0.2;

/// Frequencies the synthetic peers use by default: 110 Hz apart, all multiples of 10 Hz,
/// below 1 kHz where Opus keeps a sine clean at any bitrate, and none a harmonic of another
/// except 330/660 (second harmonics of a clean sine are far below [`PRESENCE_RATIO`]).
pub const DEFAULT_CANDIDATES: [f32; 7] = [330.0, 440.0, 550.0, 660.0, 770.0, 880.0, 990.0];

/// A continuous sine wave, produced frame by frame without phase jumps.
#[derive(Debug, Clone)]
pub struct SineTone {
    step: f64,
    phase: f64,
    amplitude: f32,
}

impl SineTone {
    /// A tone of `hz` at [`TONE_AMPLITUDE`].
    pub fn new(hz: f32) -> Self {
        Self::with_amplitude(hz, TONE_AMPLITUDE)
    }

    /// A tone of `hz` at peak `amplitude` (full scale is 1.0).
    pub fn with_amplitude(hz: f32, amplitude: f32) -> Self {
        Self {
            step: std::f64::consts::TAU * f64::from(hz) / f64::from(SAMPLE_RATE),
            phase: 0.0,
            amplitude,
        }
    }

    /// Fill `out` with the next samples of the tone.
    pub fn fill(&mut self, out: &mut [f32]) {
        for sample in out {
            *sample = self.amplitude * self.phase.sin() as f32;
            self.phase = (self.phase + self.step) % std::f64::consts::TAU;
        }
    }
}

/// Encodes a [`SineTone`] (or silence) as 20 ms mono Opus frames, DTX off, so that a
/// packet leaves every 20 ms whatever the signal.
pub struct ToneEncoder {
    tone: Option<SineTone>,
    encoder: Encoder,
    pcm: Vec<f32>,
}

/// Loudness of `pcm` as an RFC 6464 audio level: −dBov, 0 (full scale) to 127 (silence).
pub fn audio_level(pcm: &[f32]) -> u8 {
    if pcm.is_empty() {
        return 127;
    }
    let mean_square = pcm
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        / pcm.len() as f64;
    // A full-scale sine is 0 dBov (RFC 6464 §3), i.e. RMS 1/√2.
    let dbov = 10.0 * (2.0 * mean_square).log10();
    (-dbov).round().clamp(0.0, 127.0) as u8
}

impl ToneEncoder {
    /// An encoder of `hz`, or of silence when `None`.
    pub fn new(hz: Option<f32>) -> Result<Self, opus::Error> {
        // `Audio` (CELT) keeps a pure tone's spectrum cleaner than the speech modes.
        let mut encoder = Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Audio)?;
        encoder.set_dtx(false)?;
        Ok(Self {
            tone: hz.map(SineTone::new),
            encoder,
            pcm: vec![0.0; FRAME_SAMPLES],
        })
    }

    /// The next 20 ms frame, encoded.
    pub fn next_frame(&mut self) -> Result<Vec<u8>, opus::Error> {
        match &mut self.tone {
            Some(tone) => tone.fill(&mut self.pcm),
            None => self.pcm.fill(0.0),
        }
        self.encoder.encode_vec_float(&self.pcm, MAX_PACKET_BYTES)
    }

    /// The [`audio_level`] of the frame last encoded.
    pub fn last_level(&self) -> u8 {
        audio_level(&self.pcm)
    }
}

/// Tells which candidate frequencies a window of PCM holds.
#[derive(Debug, Clone)]
pub struct ToneDetector {
    candidates: Vec<f32>,
    window: Vec<f64>,
    /// Scales |X(f)|² / Σy² so that a lone on-bin tone scores 1.0: 2·Σw² / (Σw)².
    norm: f64,
}

impl ToneDetector {
    /// A detector of `candidates` (Hz) on windows of [`WINDOW_SAMPLES`].
    pub fn new(candidates: &[f32]) -> Self {
        let n = WINDOW_SAMPLES as f64;
        let window: Vec<f64> = (0..WINDOW_SAMPLES)
            .map(|i| 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n).cos())
            .collect();
        let sum: f64 = window.iter().sum();
        let sum_sq: f64 = window.iter().map(|w| w * w).sum();
        Self {
            candidates: candidates.to_vec(),
            window,
            norm: 2.0 * sum_sq / (sum * sum),
        }
    }

    /// The frequencies this detector looks for, in the order of its results.
    pub fn candidates(&self) -> &[f32] {
        &self.candidates
    }

    /// Share of the window's energy at each candidate (≈ 1.0 for a lone tone), all zero for
    /// a window quieter than [`SILENCE_RMS`]. `pcm` must hold [`WINDOW_SAMPLES`] samples;
    /// a shorter slice is analysed as far as it goes.
    pub fn levels(&self, pcm: &[f32]) -> Vec<f64> {
        let len = pcm.len().min(WINDOW_SAMPLES);
        let windowed: Vec<f64> = pcm[..len]
            .iter()
            .zip(&self.window)
            .map(|(x, w)| f64::from(*x) * w)
            .collect();
        let raw_energy: f64 = pcm[..len]
            .iter()
            .map(|x| f64::from(*x) * f64::from(*x))
            .sum();
        let energy: f64 = windowed.iter().map(|y| y * y).sum();
        if len == 0 || (raw_energy / len as f64).sqrt() < SILENCE_RMS || energy <= 0.0 {
            return vec![0.0; self.candidates.len()];
        }
        self.candidates
            .iter()
            .map(|hz| self.norm * goertzel_power(&windowed, *hz) / energy)
            .collect()
    }

    /// Indices (into [`Self::candidates`]) of the tones present in the window.
    pub fn present(&self, pcm: &[f32]) -> Vec<usize> {
        self.levels(pcm)
            .iter()
            .enumerate()
            .filter(|(_, level)| **level >= PRESENCE_RATIO)
            .map(|(i, _)| i)
            .collect()
    }
}

/// |X(f)|² of `samples` at `hz` (Goertzel: one DFT bin without an FFT).
fn goertzel_power(samples: &[f64], hz: f32) -> f64 {
    let omega = std::f64::consts::TAU * f64::from(hz) / f64::from(SAMPLE_RATE);
    let coeff = 2.0 * omega.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// Decodes a stream of Opus packets and counts, per candidate frequency, the 100 ms windows
/// in which it was present. One per received stream: the decoder keeps state.
pub struct ToneListener {
    decoder: Decoder,
    detector: ToneDetector,
    decoded: Vec<f32>,
    pending: Vec<f32>,
    heard: Vec<u64>,
    windows: u64,
}

impl ToneListener {
    /// A listener for `candidates` (Hz).
    pub fn new(candidates: &[f32]) -> Result<Self, opus::Error> {
        Ok(Self {
            // Mono: libopus downmixes stereo packets; tones need no stereo image.
            decoder: Decoder::new(SAMPLE_RATE, Channels::Mono)?,
            detector: ToneDetector::new(candidates),
            decoded: vec![0.0; MAX_DECODED_SAMPLES],
            pending: Vec::with_capacity(2 * WINDOW_SAMPLES),
            heard: vec![0; candidates.len()],
            windows: 0,
        })
    }

    /// Decode one packet's payload; every full window is analysed. Returns the indices of
    /// candidates heard in the windows completed by this packet (usually none or one window).
    pub fn push_packet(&mut self, payload: &[u8]) -> Result<Vec<usize>, opus::Error> {
        let samples = self
            .decoder
            .decode_float(payload, &mut self.decoded, false)?;
        self.pending.extend_from_slice(&self.decoded[..samples]);
        let mut heard_now = Vec::new();
        while self.pending.len() >= WINDOW_SAMPLES {
            let present = self.detector.present(&self.pending[..WINDOW_SAMPLES]);
            for &i in &present {
                self.heard[i] += 1;
            }
            heard_now.extend(present);
            self.windows += 1;
            self.pending.drain(..WINDOW_SAMPLES);
        }
        Ok(heard_now)
    }

    /// Windows analysed so far.
    pub fn windows(&self) -> u64 {
        self.windows
    }

    /// Per candidate (same order as given), windows in which it was present.
    pub fn heard(&self) -> &[u64] {
        &self.heard
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Encode `tones` (mixed) for `secs`, decode, return windows heard per default candidate.
    fn round_trip(tones: &[f32], frames: usize) -> (Vec<u64>, u64) {
        let mut encoders: Vec<SineTone> = tones.iter().map(|hz| SineTone::new(*hz)).collect();
        let mut encoder = Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Audio).unwrap();
        encoder.set_dtx(false).unwrap();
        let mut listener = ToneListener::new(&DEFAULT_CANDIDATES).unwrap();
        let mut mix = vec![0.0f32; FRAME_SAMPLES];
        let mut one = vec![0.0f32; FRAME_SAMPLES];
        for _ in 0..frames {
            mix.fill(0.0);
            for tone in &mut encoders {
                tone.fill(&mut one);
                mix.iter_mut().zip(&one).for_each(|(m, s)| *m += s);
            }
            let packet = encoder.encode_vec_float(&mix, MAX_PACKET_BYTES).unwrap();
            listener.push_packet(&packet).unwrap();
        }
        (listener.heard().to_vec(), listener.windows())
    }

    fn index(hz: f32) -> usize {
        DEFAULT_CANDIDATES.iter().position(|c| *c == hz).unwrap()
    }

    #[test]
    fn a_tone_survives_opus_and_is_told_apart() {
        // 2 s = 20 windows; the first may hold the codec's start-up.
        let (heard, windows) = round_trip(&[440.0], 100);
        assert_eq!(windows, 20);
        assert!(heard[index(440.0)] >= 18, "440 Hz heard in {heard:?}");
        for hz in DEFAULT_CANDIDATES.iter().filter(|hz| **hz != 440.0) {
            assert_eq!(heard[index(*hz)], 0, "{hz} Hz wrongly heard: {heard:?}");
        }
    }

    #[test]
    fn two_tones_are_both_heard() {
        let (heard, _) = round_trip(&[330.0, 770.0], 100);
        assert!(heard[index(330.0)] >= 18, "330 Hz: {heard:?}");
        assert!(heard[index(770.0)] >= 18, "770 Hz: {heard:?}");
        assert_eq!(heard[index(550.0)], 0, "550 Hz: {heard:?}");
        assert_eq!(heard[index(660.0)], 0, "660 Hz: {heard:?}");
    }

    #[test]
    fn silence_holds_no_tone() {
        let (heard, windows) = round_trip(&[], 50);
        assert_eq!(windows, 10);
        assert!(heard.iter().all(|n| *n == 0), "{heard:?}");
        let mut silent = ToneEncoder::new(None).unwrap();
        let mut listener = ToneListener::new(&DEFAULT_CANDIDATES).unwrap();
        for _ in 0..50 {
            listener.push_packet(&silent.next_frame().unwrap()).unwrap();
        }
        assert!(listener.heard().iter().all(|n| *n == 0));
    }

    #[test]
    fn audio_levels_follow_rfc_6464() {
        let mut pcm = vec![0.0f32; FRAME_SAMPLES];
        assert_eq!(audio_level(&pcm), 127);
        SineTone::with_amplitude(440.0, 1.0).fill(&mut pcm);
        assert_eq!(audio_level(&pcm), 0);
        SineTone::new(440.0).fill(&mut pcm);
        assert_eq!(audio_level(&pcm), 10, "0.3 of full scale is about -10 dBov");
    }

    #[test]
    fn detector_scores_a_pure_tone_near_one() {
        let mut pcm = vec![0.0f32; WINDOW_SAMPLES];
        SineTone::new(550.0).fill(&mut pcm);
        let levels = ToneDetector::new(&[550.0, 660.0]).levels(&pcm);
        assert!((levels[0] - 1.0).abs() < 0.05, "{levels:?}");
        assert!(levels[1] < 0.01, "{levels:?}");
    }
}
