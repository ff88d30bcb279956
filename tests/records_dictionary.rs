//! How the records dictionary (`src/store/sled/records2.dict`,
//! `codec::DICTIONARY_2`) was made, and how a next one would be: the
//! shipped example workflows run by the real binary on their fixtures,
//! the records they leave in a sled data folder read back, and zstd's
//! entropy tables built from them around the first dictionary's content.
//!
//! Run by hand: `cargo test --test records_dictionary -- --ignored
//! --nocapture`. It writes `target/records2.dict` and prints how records
//! compress with it. A shipped dictionary never changes (a codec test pins
//! its bytes); a new one goes under new record tags.

mod common;

use common::{BinServer, Sink};
use hookflow::store::sled::codec;
use std::time::Duration;

/// Copies of each fixture sent, each a new event.
const COPIES: usize = 60;

/// `body` with its first `"id"` value made the `n`th of its kind.
fn numbered(body: &str, n: usize) -> String {
    let at = body.find("\"evt_").expect("a Stripe event id") + 1;
    let end = at + body[at..].find('"').expect("the id ends");
    let id = &body[at..end];
    let new = format!("{}{n:04}", &id[..id.len() - 4]);
    body.replacen(id, &new, 1)
}

#[tokio::test]
#[ignore = "makes the records dictionary; run by hand"]
async fn records_dictionary_from_the_shipped_examples() {
    let sink = Sink::start().await;
    let root = env!("CARGO_MANIFEST_DIR");
    let data = tempfile::tempdir().expect("tmp");
    let (wf, sc) = (format!("{root}/workflows"), format!("{root}/scripts"));
    let shipped = common::shipped_examples_env(&sink);
    let env: Vec<(&str, &str)> = shipped.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let data_arg = data.path().to_string_lossy().to_string();
    let server = BinServer::start(
        &["--workflows", &wf, "--scripts", &sc, "--data", &data_arg],
        &env,
    );
    let client = common::client();
    for n in 0..COPIES {
        for name in [
            "stripe_payment_intent_succeeded.json",
            "stripe_invoice_paid.json",
            "stripe_invoice_payment_failed.json",
            "stripe_checkout_session_expired.json",
        ] {
            let body = numbered(&common::shipped_fixture(name), n);
            let stripe = server.url("/hooks/stripe");
            let resp =
                common::post_stripe_signed(&client, &stripe, b"whsec_test_0123456789", body).await;
            assert_eq!(resp.status().as_u16(), 202, "{name}");
        }
        let resp = common::post_github_push(
            &client,
            &server.url("/hooks/github"),
            &format!("72d3162e-cc78-11e3-81ab-{n:012}"),
            common::shipped_fixture("github_push.json"),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 202);
        let resp = common::post_shopify_order(
            &client,
            &server.url("/hooks/shopify/orders"),
            Some(&format!("b54557e4-bdd9-4b37-8a5f-{n:012}")),
            None,
        )
        .await;
        assert_eq!(resp.status().as_u16(), 202);
    }
    // Let the runs finish (the cart follow-up waits: its runs stay as
    // waiting runs are stored).
    common::wait_queue_drained(
        &client,
        &server.base,
        Duration::from_secs(60),
        "the examples' runs",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(server.terminate().success());

    let db = sled::open(data.path()).expect("the data folder opens");
    let mut samples: Vec<Vec<u8>> = Vec::new();
    for tree in ["events", "runs"] {
        let tree = db.open_tree(tree).expect("tree");
        for entry in tree.iter() {
            let (k, v) = entry.expect("reads");
            let key = String::from_utf8_lossy(&k);
            samples.push(codec::payload(&key, &v).expect("a record"));
        }
    }
    println!("{} records", samples.len());
    assert!(samples.len() > 4 * COPIES, "too few records to learn from");
    let dictionary = finalize(codec::DICTIONARY_1, &samples);
    let out = format!("{root}/target/records2.dict");
    std::fs::write(&out, &dictionary).expect("written");
    println!("{out}: {} bytes", dictionary.len());
    for (name, d) in [
        ("the first dictionary", codec::DICTIONARY_1),
        ("the new one", &dictionary[..]),
    ] {
        let mut c = zstd::bulk::Compressor::with_dictionary(1, d).expect("compressor");
        let total: usize = samples
            .iter()
            .map(|s| c.compress(s).expect("compresses").len())
            .sum();
        println!(
            "{name}: {:.1} bytes per record",
            total as f64 / samples.len() as f64
        );
    }
}

/// zstd's `ZDICT_finalizeDictionary`: `content` as the dictionary's
/// content, with entropy tables for compression level 1 made from
/// `samples`, under a fixed dictionary id.
fn finalize(content: &[u8], samples: &[Vec<u8>]) -> Vec<u8> {
    let flat: Vec<u8> = samples.concat();
    let sizes: Vec<usize> = samples.iter().map(Vec::len).collect();
    let mut out = vec![0u8; content.len() + 64 * 1024];
    let params = zstd_sys::ZDICT_params_t {
        compressionLevel: 1,
        notificationLevel: 0,
        dictID: u32::from_be_bytes(*b"hkf2"),
    };
    // SAFETY: every pointer and length is of a live buffer of that length;
    // `sizes` sums to `flat.len()`.
    let n = unsafe {
        zstd_sys::ZDICT_finalizeDictionary(
            out.as_mut_ptr().cast(),
            out.len(),
            content.as_ptr().cast(),
            content.len(),
            flat.as_ptr().cast(),
            sizes.as_ptr(),
            sizes.len() as u32,
            params,
        )
    };
    // SAFETY: a plain function of a number.
    assert_eq!(
        unsafe { zstd_sys::ZDICT_isError(n) },
        0,
        "zstd could not make it"
    );
    out.truncate(n);
    out
}
