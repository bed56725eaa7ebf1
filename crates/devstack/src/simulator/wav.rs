//! Simulated narration as real, playable audio: a voice-like tone pattern per chapter
//! (pitch glides, syllable-rate pulses, pauses, a little breath noise) encoded as PCM
//! 16-bit mono WAV, and a parser that checks such a file back. It owns the WAV format;
//! it never touches the network or the store.

/// Samples per second of every file the simulator writes.
pub const SAMPLE_RATE: u32 = 22_050;
/// Bits per sample (signed little-endian PCM).
pub const BITS_PER_SAMPLE: u16 = 16;
/// Mono.
pub const CHANNELS: u16 = 1;
/// The size of the canonical header [`encode`] writes.
pub const HEADER_LEN: usize = 44;

/// Whole seconds of audio for a chapter of `words` words: one second plus one per hundred
/// words, at most six, so files stay small while longer chapters still sound longer.
pub fn chapter_seconds(words: usize) -> u32 {
    (1 + words / 100).clamp(1, 6) as u32
}

/// Fits per-chapter lengths into `budget` seconds for the whole book (at least one second
/// per chapter), so a manuscript with hundreds of chapters cannot make a huge file.
pub fn fit_to_budget(seconds: &mut [u32], budget: u32) {
    let total: u64 = seconds.iter().map(|&s| u64::from(s)).sum();
    if total <= u64::from(budget) {
        return;
    }
    for s in seconds.iter_mut() {
        *s = ((u64::from(*s) * u64::from(budget)) / total).max(1) as u32;
    }
}

/// `seconds` of "speech" for chapter number `chapter` (each chapter has its own pitch).
pub fn synthesize(chapter: usize, seconds: u32) -> Vec<i16> {
    const PITCHES: [f64; 8] = [196.0, 220.0, 246.9, 261.6, 293.7, 329.6, 349.2, 392.0];
    let base = PITCHES[chapter % PITCHES.len()];
    let rate = f64::from(SAMPLE_RATE);
    let count = SAMPLE_RATE as usize * seconds as usize;
    let fade = (rate * 0.02) as usize;
    let mut phase = 0.0f64;
    // A small linear congruential generator: deterministic noise without a dependency.
    let mut seed: u32 = 0x9E37_79B9 ^ (chapter as u32).wrapping_mul(0x85EB_CA6B);
    let mut samples = Vec::with_capacity(count);
    for n in 0..count {
        let t = n as f64 / rate;
        // Intonation: the pitch glides slowly around the chapter's base note.
        let pitch = base * (1.0 + 0.06 * (std::f64::consts::TAU * 0.7 * t).sin());
        phase = (phase + std::f64::consts::TAU * pitch / rate) % std::f64::consts::TAU;
        // Syllables at ~4 per second, with a pause at the end of every 1.5 s "phrase".
        let syllable = (std::f64::consts::PI * (t * 4.0).fract())
            .sin()
            .max(0.0)
            .sqrt();
        let in_pause = (t / 1.5).fract() > 0.85;
        let envelope = if in_pause { 0.0 } else { syllable };
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let noise = (f64::from(seed >> 8) / f64::from(1u32 << 24) - 0.5) * 0.02;
        let voice = phase.sin() + 0.35 * (2.0 * phase).sin() + 0.15 * (3.0 * phase).sin();
        let mut value = 0.28 * envelope * voice + noise;
        // Fade in and out so tracks do not click at their edges.
        let edge = n.min(count - 1 - n);
        if edge < fade {
            value *= edge as f64 / fade as f64;
        }
        samples.push((value.clamp(-1.0, 1.0) * f64::from(i16::MAX)) as i16);
    }
    samples
}

/// A canonical 44-byte-header PCM WAV file of `samples`.
pub fn encode(samples: &[i16]) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let block_align = CHANNELS * BITS_PER_SAMPLE / 8;
    let byte_rate = SAMPLE_RATE * u32::from(block_align);
    let mut out = Vec::with_capacity(HEADER_LEN + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&CHANNELS.to_le_bytes());
    out.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    out.extend_from_slice(&byte_rate.to_le_bytes());
    out.extend_from_slice(&block_align.to_le_bytes());
    out.extend_from_slice(&BITS_PER_SAMPLE.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// What [`parse`] found in a WAV file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WavInfo {
    pub format: u16,
    pub channels: u16,
    pub sample_rate: u32,
    pub bits_per_sample: u16,
    pub data_len: u32,
    /// Duration in milliseconds, from the data size.
    pub duration_ms: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WavError {
    #[error("not a RIFF/WAVE file")]
    NotWave,
    #[error("the RIFF size says {said} bytes but the file has {actual}")]
    RiffSize { said: u32, actual: usize },
    #[error("a chunk runs past the end of the file")]
    Truncated,
    #[error("the fmt chunk is missing or malformed")]
    Format,
    #[error("the data chunk is missing")]
    NoData,
    #[error("the header fields disagree with each other")]
    Inconsistent,
}

/// Checks a WAV file's structure (RIFF size, fmt, data) and describes it.
pub fn parse(bytes: &[u8]) -> Result<WavInfo, WavError> {
    let u16_at = |at: usize| -> Result<u16, WavError> {
        bytes
            .get(at..at + 2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_le_bytes)
            .ok_or(WavError::Truncated)
    };
    let u32_at = |at: usize| -> Result<u32, WavError> {
        bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or(WavError::Truncated)
    };
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(WavError::NotWave);
    }
    let riff = u32_at(4)?;
    if riff as usize + 8 != bytes.len() {
        return Err(WavError::RiffSize {
            said: riff,
            actual: bytes.len(),
        });
    }
    let mut at = 12;
    let mut fmt: Option<(u16, u16, u32, u32, u16, u16)> = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32_at(at + 4)? as usize;
        let body = at + 8;
        if body + len > bytes.len() {
            return Err(WavError::Truncated);
        }
        if id == b"fmt " {
            if len < 16 {
                return Err(WavError::Format);
            }
            fmt = Some((
                u16_at(body)?,
                u16_at(body + 2)?,
                u32_at(body + 4)?,
                u32_at(body + 8)?,
                u16_at(body + 12)?,
                u16_at(body + 14)?,
            ));
        } else if id == b"data" {
            let (format, channels, sample_rate, byte_rate, block_align, bits) =
                fmt.ok_or(WavError::Format)?;
            if channels == 0
                || sample_rate == 0
                || u32::from(block_align) != u32::from(channels) * u32::from(bits) / 8
                || byte_rate != sample_rate * u32::from(block_align)
                || !len.is_multiple_of(usize::from(block_align.max(1)))
            {
                return Err(WavError::Inconsistent);
            }
            return Ok(WavInfo {
                format,
                channels,
                sample_rate,
                bits_per_sample: bits,
                data_len: len as u32,
                duration_ms: len as u64 * 1000 / u64::from(byte_rate),
            });
        }
        at = body + len + (len & 1);
    }
    Err(WavError::NoData)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_files_parse_back_with_consistent_sizes() {
        let samples = synthesize(2, 3);
        assert_eq!(samples.len(), 3 * SAMPLE_RATE as usize);
        let bytes = encode(&samples);
        assert_eq!(bytes.len(), HEADER_LEN + samples.len() * 2);
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(
            u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize,
            bytes.len() - 8
        );
        assert_eq!(&bytes[12..16], b"fmt ");
        assert_eq!(&bytes[36..40], b"data");
        assert_eq!(
            u32::from_le_bytes(bytes[40..44].try_into().unwrap()) as usize,
            bytes.len() - HEADER_LEN
        );
        let info = parse(&bytes).unwrap();
        assert_eq!(
            info,
            WavInfo {
                format: 1,
                channels: 1,
                sample_rate: SAMPLE_RATE,
                bits_per_sample: 16,
                data_len: (samples.len() * 2) as u32,
                duration_ms: 3000,
            }
        );
    }

    #[test]
    fn audio_is_not_silence_and_starts_and_ends_quietly() {
        let samples = synthesize(0, 2);
        let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak > 5000, "peak {peak} is too quiet to hear");
        assert!(samples[0].unsigned_abs() < 1000);
        assert!(samples[samples.len() - 1].unsigned_abs() < 1000);
        assert_ne!(
            synthesize(0, 1),
            synthesize(1, 1),
            "chapters sound different"
        );
    }

    #[test]
    fn broken_files_are_refused() {
        let good = encode(&synthesize(0, 1));
        assert_eq!(parse(b"not a wav"), Err(WavError::NotWave));
        let mut short = good.clone();
        short.truncate(good.len() - 10);
        assert!(matches!(parse(&short), Err(WavError::RiffSize { .. })));
        let mut lying = good.clone();
        lying[40..44].copy_from_slice(&(u32::MAX / 2).to_le_bytes());
        assert_eq!(parse(&lying), Err(WavError::Truncated));
        let mut bad_rate = good;
        bad_rate[28..32].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(parse(&bad_rate), Err(WavError::Inconsistent));
    }

    #[test]
    fn lengths_scale_with_words_within_bounds() {
        assert_eq!(chapter_seconds(0), 1);
        assert_eq!(chapter_seconds(170), 2);
        assert_eq!(chapter_seconds(450), 5);
        assert_eq!(chapter_seconds(100_000), 6);
        let mut many = vec![6u32; 400];
        fit_to_budget(&mut many, 180);
        assert!(many.iter().all(|&s| s == 1));
        let mut few = vec![2u32, 3];
        fit_to_budget(&mut few, 180);
        assert_eq!(few, vec![2, 3]);
    }
}
