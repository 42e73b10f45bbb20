//! What one outgoing SRTP packet costs in each profile str0m can negotiate, through the very
//! provider the SFU uses (str0m's aws-lc-rs backend): the per-packet work of `protect_rtp`
//! for a 12-byte header and an 80-byte Opus payload. Rounds alternate the profiles so that
//! the machine's noise hits them alike; medians are printed.
//!
//! ```sh
//! cargo run --profile release -p chorus-bench --example srtp_profiles
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use str0m::crypto::{Aes128CmSha1_80, CryptoProvider};

const HEADER: usize = 12;
const PAYLOAD: usize = 80;
const PACKETS: u32 = 200_000;
const ROUNDS: usize = 7;

fn main() {
    chorus_sfu::install_crypto_provider();
    let crypto: &CryptoProvider = CryptoProvider::get_default().expect("installed above");
    let srtp = crypto.srtp_provider;
    let hmac = crypto.sha1_hmac_provider;
    let mut cm = srtp.aes_128_cm_sha1_80().create_cipher([7; 16], true);
    let mut gcm128 = srtp.aead_aes_128_gcm().create_cipher([7; 16], true);
    let mut gcm256 = srtp.aead_aes_256_gcm().create_cipher([7; 32], true);
    let input = [0x5a_u8; PAYLOAD];
    let mut buf = [0_u8; HEADER + PAYLOAD + 16];
    let auth_key = [3_u8; Aes128CmSha1_80::HMAC_KEY_LEN];

    let mut samples: [Vec<f64>; 4] = Default::default();
    for _ in 0..ROUNDS {
        // AES-128-CM + HMAC-SHA1-80, as str0m's `protect_rtp` does it: counter-mode
        // encryption of the payload, then the HMAC over header, payload and ROC.
        let t = Instant::now();
        for i in 0..PACKETS {
            let mut iv = [0_u8; 16];
            iv[..4].copy_from_slice(&i.to_be_bytes());
            let (head, body) = buf.split_at_mut(HEADER);
            cm.encrypt(&iv, &input, &mut body[..PAYLOAD]).unwrap();
            black_box(head);
            Aes128CmSha1_80::rtp_hmac(
                |k, p| hmac.sha1_hmac(k, p),
                &auth_key,
                &mut buf,
                u64::from(i),
                HEADER + PAYLOAD,
            );
            black_box(&buf);
        }
        samples[0].push(t.elapsed().as_nanos() as f64 / f64::from(PACKETS));

        // Only the AES-CTR part, to split the CM figure.
        let t = Instant::now();
        for i in 0..PACKETS {
            let mut iv = [0_u8; 16];
            iv[..4].copy_from_slice(&i.to_be_bytes());
            cm.encrypt(&iv, &input, &mut buf[HEADER..HEADER + PAYLOAD])
                .unwrap();
            black_box(&buf);
        }
        samples[1].push(t.elapsed().as_nanos() as f64 / f64::from(PACKETS));

        for (k, gcm) in [(2, &mut gcm128 as &mut dyn Gcm), (3, &mut gcm256)] {
            let t = Instant::now();
            for i in 0..PACKETS {
                let mut iv = [0_u8; 12];
                iv[..4].copy_from_slice(&i.to_be_bytes());
                let aad = [0x80_u8; HEADER];
                gcm.seal(&iv, &aad, &input, &mut buf[HEADER..]);
                black_box(&buf);
            }
            samples[k].push(t.elapsed().as_nanos() as f64 / f64::from(PACKETS));
        }
    }
    let names = [
        "AES_CM_128_HMAC_SHA1_80",
        "  of which AES-128-CTR",
        "AEAD_AES_128_GCM",
        "AEAD_AES_256_GCM",
    ];
    println!(
        "ns per protected packet ({HEADER}-byte header, {PAYLOAD}-byte payload), median of {ROUNDS} rounds:"
    );
    for (name, mut s) in names.iter().zip(samples) {
        s.sort_by(f64::total_cmp);
        println!("{name:<26} {:>7.1}", s[s.len() / 2]);
    }
}

/// The two GCM ciphers behind one face.
trait Gcm {
    fn seal(&mut self, iv: &[u8; 12], aad: &[u8], input: &[u8], out: &mut [u8]);
}

impl Gcm for Box<dyn str0m::crypto::AeadAes128GcmCipher> {
    fn seal(&mut self, iv: &[u8; 12], aad: &[u8], input: &[u8], out: &mut [u8]) {
        self.encrypt(iv, aad, input, out).unwrap();
    }
}

impl Gcm for Box<dyn str0m::crypto::AeadAes256GcmCipher> {
    fn seal(&mut self, iv: &[u8; 12], aad: &[u8], input: &[u8], out: &mut [u8]) {
        self.encrypt(iv, aad, input, out).unwrap();
    }
}
