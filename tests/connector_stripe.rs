//! The Stripe connector (`connectors/stripe.yaml`) against Stripe's
//! stand-in (`tests/standins/stripe.rs`): a customer, an invoice item for
//! it, and a refund, each request as Stripe's API reference describes it
//! (form body, bearer key, pinned Stripe-Version, Idempotency-Key), and the
//! step's status, output and error for Stripe's documented answers (200,
//! 400 resource_missing and charge_already_refunded, 401, 429).

mod common;
#[path = "standins/stripe.rs"]
mod stripe;

use common::connector::{step, Harness};
use common::standin::StandIn;
use common::Backend;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use stripe::Account;

const BILL: &str = r#"name: bill-signup
trigger:
  webhook: { path: /signup }
steps:
  - id: customer
    uses: stripe.create_customer
    with:
      email: "{{ $.event.email }}"
      name: "{{ $.event.name }}"
      address_line1: "{{ $.event.street }}"
      address_postal_code: "{{ $.event.zip }}"
      address_country: "{{ $.event.country }}"
      preferred_locale: fr-FR
  - id: setup_fee
    uses: stripe.create_invoice_item
    with:
      customer: "{{ $.steps.customer.body.id }}"
      price: price_1MtGUsLkdIwHu7ix1be5Ljaj
      quantity: "{{ $.event.seats }}"
      description: Setup fee
"#;

const REFUND: &str = r#"name: refund-cancelled
trigger:
  webhook: { path: /cancelled }
steps:
  - id: refund
    uses: stripe.refund
    with:
      payment_intent: "{{ $.event.payment }}"
      amount: "{{ $.event.amount }}"
      reason: "{{ $.event.reason }}"
"#;

const ITEM: &str = r#"name: usage
trigger:
  webhook: { path: /usage }
steps:
  - id: item
    uses: stripe.create_invoice_item
    with:
      customer: "{{ $.event.customer }}"
      amount: "{{ $.event.cents }}"
      currency: eur
      period_start: 1727740800
      period_end: 1730419199
"#;

async fn serve(backend: Backend, workflow: &str, key: &str) -> (StandIn, Harness) {
    let api = StandIn::start(stripe::routes(Arc::new(Account::default()))).await;
    let h = Harness::start(
        backend,
        workflow,
        &[("STRIPE_API_KEY", key), ("STRIPE_BASE_URL", &api.base)],
    );
    (api, h)
}

fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn attempts(step: &Value) -> usize {
    step["attempts"].as_array().map_or(0, Vec::len)
}

both!(
    a_customer_and_an_invoice_item_as_stripe_documents_them,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_customer_and_an_invoice_item_as_stripe_documents_them(backend: Backend) {
    let (api, h) = serve(backend, BILL, stripe::KEY).await;
    let run = h
        .run(
            "/signup",
            &json!({
                "email": "jenny.rosen@example.com", "name": "Jenny Rosen",
                "street": "1 Rue de Rivoli", "zip": 75001, "country": "FR", "seats": 3
            }),
        )
        .await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");

    let customer = step(&run, "customer");
    assert_eq!(customer["uses"], "stripe.create_customer");
    assert_eq!(customer["output"]["status"], 200);
    assert_eq!(customer["output"]["body"]["object"], "customer");
    let id = customer["output"]["body"]["id"].as_str().expect("an id");
    assert!(id.starts_with("cus_"), "{id}");
    // What Stripe received: the key as a bearer, the pinned version, a form
    // with nested fields in brackets, the step's Idempotency-Key.
    let sent = &api.requests_to(stripe::CUSTOMERS)[0];
    assert_eq!(sent.bearer(), Some(stripe::KEY));
    assert_eq!(sent.header("stripe-version"), Some(stripe::VERSION));
    assert_eq!(
        sent.header("idempotency-key"),
        Some(format!("{}.customer", run["id"].as_str().expect("run id")).as_str())
    );
    assert_eq!(
        sent.form(),
        form(&[
            ("email", "jenny.rosen@example.com"),
            ("name", "Jenny Rosen"),
            ("address[line1]", "1 Rue de Rivoli"),
            ("address[postal_code]", "75001"),
            ("address[country]", "FR"),
            ("preferred_locales[0]", "fr-FR"),
        ])
    );

    let fee = step(&run, "setup_fee");
    assert_eq!(fee["uses"], "stripe.create_invoice_item");
    assert_eq!(fee["output"]["body"]["object"], "invoiceitem");
    assert_eq!(fee["output"]["body"]["customer"], id);
    assert_eq!(fee["output"]["body"]["quantity"], 3);
    assert_eq!(
        api.requests_to(stripe::INVOICE_ITEMS)[0].form(),
        form(&[
            ("customer", id),
            ("pricing[price]", "price_1MtGUsLkdIwHu7ix1be5Ljaj"),
            ("quantity", "3"),
            ("description", "Setup fee"),
        ])
    );
    let all = h.history_and_log().await;
    assert!(!all.contains(stripe::KEY), "the API key leaked");
    assert_eq!(
        customer["attempts"][0]["request"]["headers"]["Authorization"],
        "Bearer [redacted]"
    );
}

both!(
    an_invoice_item_for_an_unknown_customer_fails_with_resource_missing,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn an_invoice_item_for_an_unknown_customer_fails_with_resource_missing(backend: Backend) {
    let (api, h) = serve(backend, ITEM, stripe::KEY).await;
    let run = h
        .run(
            "/usage",
            &json!({"customer": stripe::KNOWN_CUSTOMER, "cents": -250}),
        )
        .await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    let item = step(&run, "item");
    assert_eq!(item["output"]["body"]["amount"], -250);
    assert_eq!(
        api.requests_to(stripe::INVOICE_ITEMS)[0].form(),
        form(&[
            ("customer", stripe::KNOWN_CUSTOMER),
            ("amount", "-250"),
            ("currency", "eur"),
            ("period[start]", "1727740800"),
            ("period[end]", "1730419199"),
        ])
    );

    let run = h
        .run("/usage", &json!({"customer": "cus_nope", "cents": 100}))
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let item = step(&run, "item");
    assert_eq!(item["error"], "HTTP 400: No such customer: 'cus_nope'");
    assert_eq!(attempts(item), 1);
    let body = &item["attempts"][0]["response"]["body"]["error"];
    assert_eq!(body["code"], "resource_missing");
    assert_eq!(body["param"], "customer");
    assert_eq!(api.violations(), Vec::<String>::new());
}

both!(
    a_refund_succeeds_once_and_a_second_is_charge_already_refunded,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_refund_succeeds_once_and_a_second_is_charge_already_refunded(backend: Backend) {
    let (api, h) = serve(backend, REFUND, stripe::KEY).await;
    let event = json!({"payment": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "amount": 500, "reason": "requested_by_customer"});
    let run = h.run("/cancelled", &event).await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    let refund = step(&run, "refund");
    assert_eq!(refund["uses"], "stripe.refund");
    assert_eq!(refund["output"]["body"]["object"], "refund");
    assert_eq!(refund["output"]["body"]["status"], "succeeded");
    assert_eq!(refund["output"]["body"]["amount"], 500);
    assert_eq!(
        api.requests_to(stripe::REFUNDS)[0].form(),
        form(&[
            ("payment_intent", "pi_3MtwBwLkdIwHu7ix28a3tqPa"),
            ("amount", "500"),
            ("reason", "requested_by_customer"),
        ])
    );

    // Another run (another Idempotency-Key) refunding the same payment.
    let run = h.run("/cancelled", &event).await;
    assert_eq!(run["status"], "failed", "{run}");
    let refund = step(&run, "refund");
    assert_eq!(
        refund["error"],
        "HTTP 400: Charge ch_3MmlLrLkdIwHu7ix0snN0B15 has already been refunded."
    );
    assert_eq!(
        refund["attempts"][0]["response"]["body"]["error"]["code"],
        "charge_already_refunded"
    );
    assert_eq!(attempts(refund), 1);
    assert_eq!(api.violations(), Vec::<String>::new());
}

both!(
    a_reason_stripe_does_not_take_is_refused_before_sending,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_reason_stripe_does_not_take_is_refused_before_sending(backend: Backend) {
    let (api, h) = serve(backend, REFUND, stripe::KEY).await;
    let run = h
        .run(
            "/cancelled",
            &json!({"payment": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "amount": 500, "reason": "changed_mind"}),
        )
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = step(&run, "refund")["error"]
        .as_str()
        .expect("an error")
        .to_string();
    assert!(
        error.contains("`reason` must be one of: duplicate, fraudulent, requested_by_customer"),
        "{error}"
    );
    assert!(api.requests().is_empty(), "nothing reaches Stripe");
}

both!(
    too_many_requests_is_retried_with_the_same_idempotency_key,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn too_many_requests_is_retried_with_the_same_idempotency_key(backend: Backend) {
    let (api, h) = serve(backend, REFUND, stripe::KEY).await;
    api.queue(stripe::REFUNDS, vec![stripe::too_many_requests()]);
    let run = h
        .run(
            "/cancelled",
            &json!({"payment": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "amount": 500, "reason": "duplicate"}),
        )
        .await;
    assert_eq!(api.violations(), Vec::<String>::new());
    assert_eq!(run["status"], "succeeded", "{run}");
    let refund = step(&run, "refund");
    assert_eq!(attempts(refund), 2, "{refund}");
    assert_eq!(refund["attempts"][0]["response"]["status"], 429);
    assert_eq!(
        refund["attempts"][0]["error"],
        "HTTP 429: Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits."
    );
    assert_eq!(refund["output"]["body"]["status"], "succeeded");
    // Stripe tells a retry from a second refund by its key: the same one.
    let sent = api.requests_to(stripe::REFUNDS);
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0].header("idempotency-key"),
        sent[1].header("idempotency-key")
    );
    assert_eq!(sent[0].form(), sent[1].form());
}

both!(
    a_key_stripe_does_not_know_fails_with_401,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_key_stripe_does_not_know_fails_with_401(backend: Backend) {
    let (_api, h) = serve(
        backend,
        REFUND,
        "rk_test_51Nwrong0000000000000000000000000000000000000000",
    )
    .await;
    let run = h
        .run(
            "/cancelled",
            &json!({"payment": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "amount": 500, "reason": "duplicate"}),
        )
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let refund = step(&run, "refund");
    assert_eq!(
        refund["error"],
        "HTTP 401: Invalid API Key provided: rk_test_****0000"
    );
    assert_eq!(attempts(refund), 1);
    assert!(!h
        .history_and_log()
        .await
        .contains("rk_test_51Nwrong0000000000000000000000000000000000000000"));
}
