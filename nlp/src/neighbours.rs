//! The nearest training messages' vote. A linear head draws one boundary per class, while a
//! class's messages lie in several places of the embedding; blending the head's probabilities
//! with the labels of the message's nearest training messages follows those places.
//!
//! The vote makes the probability of the class it chose larger even for a message far from
//! every example. So where a probability tells the known from the unknown (the intent head's
//! confidence), the vote only moves the choice (`order`); where the classes include "none of
//! these" (the judgement's off topic), the blended probabilities are used (`blend`).

use std::io::Write;

/// How the nearest training messages vote.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NeighbourSettings {
    /// How many nearest messages vote; 0: none.
    pub k: usize,
    /// Their share of the blended vote, 0 ..= 1.
    pub weight: f32,
    /// A neighbour's vote is exp((similarity − the nearest one's) / temperature).
    pub temperature: f32,
}

impl NeighbourSettings {
    pub const NONE: Self = Self { k: 0, weight: 0.0, temperature: 0.1 };

    pub fn votes(&self) -> bool {
        self.k > 0 && self.weight > 0.0 && self.temperature > 0.0
    }
}

/// What a model file's header says of the neighbours written after its own values.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NeighbourHeader {
    pub settings: NeighbourSettings,
    pub rows: usize,
    pub dim: usize,
}

impl NeighbourHeader {
    /// How many bytes `Neighbours::write` writes for this header.
    pub fn file_len(&self) -> usize {
        self.rows * (4 + self.dim + 4)
    }
}

/// The training messages' embeddings (unit length, in 8 bits) with their labels.
#[derive(Clone, PartialEq)]
pub struct Neighbours {
    pub settings: NeighbourSettings,
    dim: usize,
    /// rows × dim.
    vectors: Vec<i8>,
    /// What one step of a row's 8-bit values is worth.
    scales: Vec<f32>,
    labels: Vec<u32>,
}

impl Neighbours {
    /// Keeps nothing when the settings give the neighbours no vote.
    pub fn new<'a>(settings: NeighbourSettings, examples: impl IntoIterator<Item = (&'a [f32], usize)>) -> Self {
        let mut kept = Self { settings, dim: 0, vectors: Vec::new(), scales: Vec::new(), labels: Vec::new() };
        if !settings.votes() {
            return kept;
        }
        for (embedding, label) in examples {
            if embedding.is_empty() {
                // Nothing to be near to (the words-only head).
                return Self::new(NeighbourSettings::NONE, []);
            }
            assert!(kept.labels.is_empty() || embedding.len() == kept.dim, "training embeddings of one length");
            kept.dim = embedding.len();
            kept.scales.push(quantise_into(embedding, &mut kept.vectors) / length(embedding).max(f32::MIN_POSITIVE));
            kept.labels.push(u32::try_from(label).expect("fewer classes than u32"));
        }
        kept
    }

    /// `probabilities` (one per class) blended with the weighted share of each class among the
    /// `k` nearest training messages; unchanged when no neighbours are kept.
    pub fn blend(&self, probabilities: &mut [f32], embedding: &[f32]) {
        if let Some(vote) = self.vote(embedding, probabilities.len()) {
            let share = self.settings.weight;
            probabilities.iter_mut().zip(vote).for_each(|(p, v)| *p = (1.0 - share) * *p + share * v);
        }
    }

    /// The classes, most likely first, by the head's `probabilities` blended as by `blend`.
    pub fn order(&self, probabilities: &[f32], embedding: &[f32]) -> Vec<usize> {
        let mut blended = probabilities.to_vec();
        self.blend(&mut blended, embedding);
        let mut classes: Vec<usize> = (0..blended.len()).collect();
        classes.sort_by(|a, b| blended[*b].total_cmp(&blended[*a]));
        classes
    }

    fn vote(&self, embedding: &[f32], classes: usize) -> Option<Vec<f32>> {
        let norm = length(embedding);
        if !self.settings.votes() || self.labels.is_empty() || self.dim == 0 || embedding.len() != self.dim || norm == 0.0 {
            return None;
        }
        // The message in 8 bits too: integer products are several times faster than converting
        // each stored value, and the rounding moves a similarity by under a hundredth.
        let mut query = Vec::with_capacity(self.dim);
        let query_step = quantise_into(embedding, &mut query) / norm;
        let mut similar: Vec<(f32, usize)> = dots_i8(&query, &self.vectors)
            .into_iter()
            .zip(&self.scales)
            .enumerate()
            .map(|(i, (dot, scale))| (dot as f32 * scale * query_step, i))
            .collect();
        let k = self.settings.k.min(similar.len());
        similar.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
        let nearest = similar[..k].iter().map(|s| s.0).fold(f32::MIN, f32::max);
        let mut vote = vec![0.0f32; classes];
        for &(similarity, i) in &similar[..k] {
            if let Some(v) = vote.get_mut(self.labels[i] as usize) {
                *v += ((similarity - nearest) / self.settings.temperature).exp();
            }
        }
        let sum: f32 = vote.iter().sum();
        (sum > 0.0).then(|| vote.into_iter().map(|v| v / sum).collect())
    }

    /// For a model file's header.
    pub fn header(&self) -> NeighbourHeader {
        NeighbourHeader { settings: self.settings, rows: self.labels.len(), dim: self.dim }
    }

    pub fn write(&self, file: &mut impl Write) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(self.header().file_len());
        self.scales.iter().for_each(|s| bytes.extend(s.to_le_bytes()));
        self.vectors.iter().for_each(|v| bytes.extend(v.to_le_bytes()));
        self.labels.iter().for_each(|l| bytes.extend(l.to_le_bytes()));
        file.write_all(&bytes)
    }

    /// Reads what `write` wrote.
    pub fn read(header: &NeighbourHeader, bytes: &[u8]) -> std::io::Result<Self> {
        let NeighbourHeader { settings, rows, dim } = *header;
        if bytes.len() != header.file_len() {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "neighbours: size does not match the header"));
        }
        let (scales, rest) = bytes.split_at(rows * 4);
        let (vectors, labels) = rest.split_at(rows * dim);
        let word = |c: &[u8]| <[u8; 4]>::try_from(c).expect("4 bytes");
        Ok(Self {
            settings,
            dim,
            vectors: vectors.iter().map(|b| i8::from_le_bytes([*b])).collect(),
            scales: scales.chunks_exact(4).map(|c| f32::from_le_bytes(word(c))).collect(),
            labels: labels.chunks_exact(4).map(|c| u32::from_le_bytes(word(c))).collect(),
        })
    }
}

/// Its shape only: the vectors are megabytes.
impl std::fmt::Debug for Neighbours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Neighbours").field("settings", &self.settings).field("rows", &self.labels.len()).field("dim", &self.dim).finish()
    }
}

/// `values` in 8 bits, appended to `out`; returns the step one unit is worth (the largest
/// magnitude takes ±127; 1 for all zeros). Divided by the vector's length, the step gives the
/// unit vector's. Also the static token table's rows (`encoder_static.rs`).
pub(crate) fn quantise_into(values: &[f32], out: &mut Vec<i8>) -> f32 {
    let largest = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let step = if largest > 0.0 { largest / 127.0 } else { 1.0 };
    out.extend(values.iter().map(|v| (v / step).round().clamp(-127.0, 127.0) as i8));
    step
}

fn length(vector: &[f32]) -> f32 {
    vector.iter().map(|v| v * v).sum::<f32>().sqrt()
}

/// The dot product of two rows of 8-bit values of one length, with the widest vector
/// instructions this CPU has (the build targets the x86-64 baseline: SSE2's 128 bits).
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    debug_assert_eq!(a.len(), b.len(), "rows of one length");
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has AVX-512 F and BW, both checked just above.
            return unsafe { dot_i8_avx512(a, b) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { dot_i8_avx2(a, b) };
        }
    }
    dot_i8_portable(a, b)
}

/// The dot products of `query` with each row of `rows` (rows of its length, one after another).
fn dots_i8(query: &[i8], rows: &[i8]) -> Vec<i32> {
    if query.is_empty() {
        return Vec::new();
    }
    #[cfg(target_arch = "x86_64")]
    {
        if query.len() % 64 == 0
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni")
        {
            // SAFETY: the CPU has AVX-512 F, BW and VNNI, all checked just above.
            return unsafe { dots_i8_vnni(query, rows) };
        }
    }
    rows.chunks_exact(query.len()).map(|row| dot_i8(query, row)).collect()
}

/// VNNI multiplies unsigned bytes by signed ones, four products summed per 32-bit lane. Each
/// row byte is taken as itself plus 128 (its top bit flipped; values are within ±127), so every
/// row's sum carries 128 × the query's sum too, subtracted once. Faster than widening to 16
/// bits, and exact while 255 × 127 × the length fits an i32 (lengths under 66,000).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn dots_i8_vnni(query: &[i8], rows: &[i8]) -> Vec<i32> {
    use std::arch::x86_64::{__m512i, _mm512_dpbusd_epi32, _mm512_loadu_si512, _mm512_reduce_add_epi32, _mm512_set1_epi8, _mm512_setzero_si512, _mm512_xor_si512};
    let excess = 128 * query.iter().map(|&v| i32::from(v)).sum::<i32>();
    let flip = _mm512_set1_epi8(i8::MIN);
    // SAFETY (both loads): each chunk is 64 bytes, one 512-bit value, read unaligned.
    let query: Vec<__m512i> = query.chunks_exact(64).map(|c| unsafe { _mm512_loadu_si512(c.as_ptr().cast()) }).collect();
    rows.chunks_exact(query.len() * 64)
        .map(|row| {
            let mut sum = _mm512_setzero_si512();
            for (q, r) in query.iter().zip(row.chunks_exact(64)) {
                let shifted = _mm512_xor_si512(unsafe { _mm512_loadu_si512(r.as_ptr().cast()) }, flip);
                sum = _mm512_dpbusd_epi32(sum, shifted, *q);
            }
            _mm512_reduce_add_epi32(sum) - excess
        })
        .collect()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn dot_i8_avx512(a: &[i8], b: &[i8]) -> i32 {
    dot_i8_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    dot_i8_portable(a, b)
}

/// Products widened to 32 bits in independent sums, so the compiler uses vector
/// multiply-adds; 127 × 127 × a length under 133,000 fits an i32 (embeddings have hundreds).
#[inline(always)]
fn dot_i8_portable(a: &[i8], b: &[i8]) -> i32 {
    let mut lanes = [0i32; 32];
    let (a_chunks, b_chunks) = (a.chunks_exact(32), b.chunks_exact(32));
    let tail: i32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| i32::from(*x) * i32::from(*y)).sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..32 {
            lanes[lane] += i32::from(x[lane]) * i32::from(y[lane]);
        }
    }
    lanes.iter().sum::<i32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_messages_outvote_the_rest_and_survive_a_round_trip() {
        let settings = NeighbourSettings { k: 3, weight: 1.0, temperature: 0.05 };
        let rows: Vec<(Vec<f32>, usize)> = vec![(vec![1.0, 0.0, 0.0], 0), (vec![0.9, 0.1, 0.0], 0), (vec![0.0, 1.0, 0.0], 1), (vec![0.0, 0.0, 1.0], 2)];
        let kept = Neighbours::new(settings, rows.iter().map(|(v, l)| (v.as_slice(), *l)));
        let head = [0.1, 0.8, 0.1];
        assert_eq!(kept.order(&head, &[0.95, 0.05, 0.0]), vec![0, 1, 2]);
        assert_eq!(kept.order(&head, &[0.0, 0.05, 0.95])[0], 2);
        let mut file = Vec::new();
        kept.write(&mut file).unwrap();
        let header = kept.header();
        assert_eq!((header.rows, file.len()), (4, header.file_len()));
        assert_eq!(Neighbours::read(&header, &file).unwrap(), kept);
        assert!(Neighbours::read(&header, &file[1..]).is_err());
        let none = Neighbours::new(NeighbourSettings::NONE, [(&[1.0f32, 0.0, 0.0][..], 0)]);
        assert_eq!(none.order(&head, &[0.95, 0.05, 0.0]), vec![1, 0, 2]);
    }

    #[test]
    fn similarities_in_eight_bits_stay_within_a_hundredth_of_the_cosine() {
        // Deterministic vectors of an encoder's length, with one value far larger than the rest.
        let vector = |seed: u32| -> Vec<f32> {
            (0..384u32).map(|i| ((i.wrapping_mul(2654435761).wrapping_add(seed * 40503) % 1000) as f32 / 500.0 - 1.0) * if i == seed { 8.0 } else { 1.0 }).collect()
        };
        let cosine = |a: &[f32], b: &[f32]| {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt())
        };
        for (i, j) in [(1, 2), (3, 3), (5, 300), (7, 11)] {
            let (a, b) = (vector(i), vector(j));
            let unit = |v: &[f32]| {
                let mut row = Vec::new();
                let step = quantise_into(v, &mut row) / length(v);
                (row, step)
            };
            let ((qa, sa), (qb, sb)) = (unit(&a), unit(&b));
            let quantised = dot_i8(&qa, &qb) as f32 * sa * sb;
            assert!((quantised - cosine(&a, &b)).abs() < 0.01, "{i}, {j}: {quantised} against {}", cosine(&a, &b));
            let plain: i64 = qa.iter().zip(&qb).map(|(x, y)| i64::from(*x) * i64::from(*y)).sum();
            assert_eq!(i64::from(dot_i8(&qa, &qb)), plain, "this CPU's vector instructions sum exactly");
        }
    }

    #[test]
    fn products_with_many_rows_are_exact_at_every_extreme() {
        // Rows of the extremes (±127, 0) and mixed values; lengths with and without a whole
        // number of 64-byte chunks: on a CPU with AVX-512 VNNI the first three take its byte
        // products (`dots_i8_vnni`), the last the plain path.
        for dim in [64, 384, 896, 100] {
            let value = |r: usize, i: usize| match r {
                0 => 127,
                1 => -127,
                2 => 0,
                _ => ((r * 7919 + i * 104729) % 255) as i32 - 127,
            } as i8;
            let query: Vec<i8> = (0..dim).map(|i| value(5 + i % 3, i)).collect();
            let rows: Vec<i8> = (0..9).flat_map(|r| (0..dim).map(move |i| value(r, i))).collect();
            let plain: Vec<i32> = rows.chunks_exact(dim).map(|row| query.iter().zip(row).map(|(x, y)| i32::from(*x) * i32::from(*y)).sum()).collect();
            assert_eq!(dots_i8(&query, &rows), plain, "length {dim}");
            let extreme = vec![-127i8; dim];
            assert_eq!(dots_i8(&extreme, &rows[..dim]), vec![-127 * 127 * dim as i32], "length {dim}, all -127 against all 127");
        }
        assert!(dots_i8(&[], &[1, 2, 3]).is_empty(), "no length, no rows");
    }
}
