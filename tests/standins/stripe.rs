//! Stripe's stand-in, per Stripe's API reference (https://docs.stripe.com/api)
//! at version 2025-03-31.basil: the key as `Authorization: Bearer`
//! (https://docs.stripe.com/api/authentication), a form body
//! (`application/x-www-form-urlencoded`, nested fields as `a[b]`),
//! `Stripe-Version`, and an `Idempotency-Key` of at most 255 characters
//! (https://docs.stripe.com/api/idempotent_requests); the same key again
//! gets the first answer back.
//!
//! - Create a customer (https://docs.stripe.com/api/customers/create):
//!   `POST /v1/customers`, every parameter optional; `200` with the
//!   Customer.
//! - Create a refund (https://docs.stripe.com/api/refunds/create):
//!   `POST /v1/refunds` with `charge` or `payment_intent`, `amount` a
//!   positive integer, `reason` one of duplicate, fraudulent,
//!   requested_by_customer; `200` with the Refund. A payment refunded
//!   already gets `400` `charge_already_refunded`.
//! - Create an invoice item (https://docs.stripe.com/api/invoiceitems/create,
//!   and https://docs.stripe.com/changelog/basil/2025-03-31/invoice-pricing-configurations
//!   for `pricing[price]` in place of `price`): `POST /v1/invoiceitems`,
//!   `customer` required, and `amount` or `pricing[price]`; `200` with the
//!   Invoice Item. A customer Stripe does not know gets `400`
//!   `resource_missing` "No such customer: 'cus_…'".
//! - Errors (https://docs.stripe.com/api/errors): `{"error": {"type",
//!   "code", "message", "param", "doc_url"}}`; `401` for a bad key; `429`
//!   for too many requests, for which the reference shows no body and no
//!   Retry-After (the stand-in answers an `invalid_request_error`).
#![allow(dead_code)] // a test uses the part of its provider's API it needs

use crate::common::standin::{Reply, Request, Route};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

pub const KEY: &str = "rk_test_51Nstandin0000000000000000000000000000000000000000";
pub const VERSION: &str = "2025-03-31.basil";
pub const CUSTOMERS: &str = "POST /v1/customers";
pub const REFUNDS: &str = "POST /v1/refunds";
pub const INVOICE_ITEMS: &str = "POST /v1/invoiceitems";
/// A customer the account has from before.
pub const KNOWN_CUSTOMER: &str = "cus_NffrFeUfNV2Hib";

/// Stripe's error body.
pub fn error(
    status: u16,
    kind: &str,
    code: Option<&str>,
    message: &str,
    param: Option<&str>,
) -> Reply {
    let mut e = json!({"type": kind, "message": message});
    if let Some(code) = code {
        e["code"] = json!(code);
        e["doc_url"] = json!(format!(
            "https://docs.stripe.com/error-codes/{}",
            code.replace('_', "-")
        ));
    }
    if let Some(param) = param {
        e["param"] = json!(param);
    }
    Reply::json(status, json!({ "error": e }))
}

pub fn invalid_key() -> Reply {
    error(
        401,
        "invalid_request_error",
        None,
        "Invalid API Key provided: rk_test_****0000",
        None,
    )
}

pub fn too_many_requests() -> Reply {
    error(
        429,
        "invalid_request_error",
        None,
        "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
        None,
    )
}

/// What the stand-in remembers: customers, refunded payments, and the
/// answers given per Idempotency-Key.
#[derive(Default)]
pub struct Account {
    pub customers: Mutex<Vec<String>>,
    pub refunded: Mutex<HashSet<String>>,
    answers: Mutex<HashMap<String, Reply>>,
}

impl Account {
    fn knows(&self, customer: &str) -> bool {
        customer == KNOWN_CUSTOMER
            || self
                .customers
                .lock()
                .expect("lock")
                .iter()
                .any(|c| c == customer)
    }
}

/// The form fields are among `allowed` (exact names, or `prefix[…]`).
fn fields(
    r: &Request,
    allowed: &'static [&'static str],
) -> Result<BTreeMap<String, String>, String> {
    let form = r.form();
    for k in form.keys() {
        let known = allowed.iter().any(|a| match a.strip_suffix("[*]") {
            Some(prefix) => k
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('[') && rest.ends_with(']')),
            None => a == k,
        });
        if !known {
            return Err(format!(
                "`{k}` is not a parameter of this call at {VERSION}"
            ));
        }
    }
    Ok(form)
}

fn integer(form: &BTreeMap<String, String>, k: &str, positive: bool) -> Result<(), String> {
    match form.get(k) {
        None => Ok(()),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if !positive || n > 0 => Ok(()),
            _ => Err(format!(
                "`{k}` must be a{} integer, got {v}",
                if positive { " positive" } else { "n" }
            )),
        },
    }
}

fn boolean(form: &BTreeMap<String, String>, k: &str) -> Result<(), String> {
    match form.get(k).map(String::as_str) {
        None | Some("true" | "false") => Ok(()),
        Some(v) => Err(format!("`{k}` must be true or false, got {v}")),
    }
}

fn customer_shape(r: &Request) -> Result<(), String> {
    let form = fields(
        r,
        &[
            "email",
            "name",
            "phone",
            "description",
            "address[*]",
            "preferred_locales[*]",
            "metadata[*]",
            "expand[*]",
        ],
    )?;
    for k in form.keys().filter(|k| k.starts_with("address[")) {
        let sub = &k["address[".len()..k.len() - 1];
        if !["line1", "line2", "city", "state", "postal_code", "country"].contains(&sub) {
            return Err(format!("`{k}` is not an address field"));
        }
    }
    Ok(())
}

fn refund_shape(r: &Request) -> Result<(), String> {
    let form = fields(
        r,
        &[
            "amount",
            "charge",
            "payment_intent",
            "reason",
            "refund_application_fee",
            "reverse_transfer",
            "metadata[*]",
            "expand[*]",
            "currency",
            "customer",
            "instructions_email",
            "origin",
        ],
    )?;
    if !form.contains_key("charge") && !form.contains_key("payment_intent") {
        return Err("one of `charge` or `payment_intent` is required".into());
    }
    integer(&form, "amount", true)?;
    if let Some(reason) = form.get("reason") {
        if !["duplicate", "fraudulent", "requested_by_customer"].contains(&reason.as_str()) {
            return Err(format!("`reason` {reason} is not one of the API's"));
        }
    }
    boolean(&form, "refund_application_fee")?;
    boolean(&form, "reverse_transfer")
}

fn invoice_item_shape(r: &Request) -> Result<(), String> {
    let form = fields(
        r,
        &[
            "customer",
            "amount",
            "currency",
            "description",
            "discountable",
            "invoice",
            "period[start]",
            "period[end]",
            "pricing[price]",
            "quantity",
            "subscription",
            "metadata[*]",
            "expand[*]",
            "tax_behavior",
            "tax_rates[*]",
            "unit_amount_decimal",
        ],
    )?;
    if !form.contains_key("amount") && !form.contains_key("pricing[price]") {
        return Err("one of `amount` or `pricing[price]` is required".into());
    }
    integer(&form, "amount", false)?;
    integer(&form, "quantity", true)?;
    integer(&form, "period[start]", true)?;
    integer(&form, "period[end]", true)?;
    if form.contains_key("period[start]") != form.contains_key("period[end]") {
        return Err("`period[start]` and `period[end]` go together".into());
    }
    if let Some(c) = form.get("currency") {
        if c.len() != 3 || !c.chars().all(|c| c.is_ascii_lowercase()) {
            return Err(format!("`currency` must be a lower-case ISO code, got {c}"));
        }
    }
    boolean(&form, "discountable")
}

fn customer(r: &Request, account: &Account) -> Reply {
    let form = r.form();
    let id = {
        let mut known = account.customers.lock().expect("lock");
        let id = format!("cus_Standin{:04}", known.len() + 1);
        known.push(id.clone());
        id
    };
    let get = |k: &str| form.get(k).cloned().map_or(Value::Null, Value::String);
    let address = ["line1", "line2", "city", "state", "postal_code", "country"]
        .iter()
        .map(|f| (f.to_string(), get(&format!("address[{f}]"))))
        .collect::<serde_json::Map<_, _>>();
    let has_address = address.values().any(|v| !v.is_null());
    Reply::json(
        200,
        json!({
            "id": id,
            "object": "customer",
            "address": if has_address { Value::Object(address) } else { Value::Null },
            "balance": 0,
            "created": 1680893993,
            "currency": null,
            "default_source": null,
            "delinquent": false,
            "description": get("description"),
            "email": get("email"),
            "invoice_prefix": "0759376C",
            "invoice_settings": {"custom_fields": null, "default_payment_method": null, "footer": null, "rendering_options": null},
            "livemode": false,
            "metadata": {},
            "name": get("name"),
            "next_invoice_sequence": 1,
            "phone": get("phone"),
            "preferred_locales": form.get("preferred_locales[0]").map_or(json!([]), |l| json!([l])),
            "shipping": null,
            "tax_exempt": "none",
            "test_clock": null
        }),
    )
}

fn refund(r: &Request, account: &Account) -> Reply {
    let form = r.form();
    let (charge, pi) = (form.get("charge"), form.get("payment_intent"));
    let payment = charge.or(pi).cloned().unwrap_or_default();
    if !account
        .refunded
        .lock()
        .expect("lock")
        .insert(payment.clone())
    {
        let charge = charge
            .cloned()
            .unwrap_or_else(|| "ch_3MmlLrLkdIwHu7ix0snN0B15".into());
        return error(
            400,
            "invalid_request_error",
            Some("charge_already_refunded"),
            &format!("Charge {charge} has already been refunded."),
            None,
        );
    }
    let amount: i64 = form
        .get("amount")
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    Reply::json(
        200,
        json!({
            "id": "re_1Nispe2eZvKYlo2Cd31jOCgZ",
            "object": "refund",
            "amount": amount,
            "balance_transaction": "txn_1Nispe2eZvKYlo2CYezqFhEx",
            "charge": charge.cloned().unwrap_or_else(|| "ch_3MmlLrLkdIwHu7ix0snN0B15".into()),
            "created": 1692942318,
            "currency": "usd",
            "destination_details": {"card": {"reference": "123456789012", "reference_status": "available", "reference_type": "acquirer_reference_number", "type": "refund"}, "type": "card"},
            "metadata": {},
            "payment_intent": pi.cloned().map_or(Value::Null, Value::String),
            "reason": form.get("reason").cloned().map_or(Value::Null, Value::String),
            "receipt_number": null,
            "source_transfer_reversal": null,
            "status": "succeeded",
            "transfer_reversal": null
        }),
    )
}

fn invoice_item(r: &Request, account: &Account) -> Reply {
    let form = r.form();
    let customer = form.get("customer").cloned().unwrap_or_default();
    if !account.knows(&customer) {
        return error(
            400,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such customer: '{customer}'"),
            Some("customer"),
        );
    }
    let price = form.get("pricing[price]");
    let quantity: i64 = form
        .get("quantity")
        .and_then(|q| q.parse().ok())
        .unwrap_or(1);
    let amount: i64 = match (form.get("amount"), price) {
        (Some(a), _) => a.parse().unwrap_or_default(),
        (None, _) => 1099 * quantity,
    };
    Reply::json(
        200,
        json!({
            "id": "ii_1MtGUtLkdIwHu7ixBYwjAM00",
            "object": "invoiceitem",
            "amount": amount,
            "currency": form.get("currency").cloned().unwrap_or_else(|| "usd".into()),
            "customer": customer,
            "date": 1680640231,
            "description": form.get("description").cloned().map_or(Value::Null, Value::String),
            "discountable": form.get("discountable").is_none_or(|d| d == "true"),
            "discounts": [],
            "invoice": form.get("invoice").cloned().map_or(Value::Null, Value::String),
            "livemode": false,
            "metadata": {},
            "period": {"end": 1680640231, "start": 1680640231},
            "pricing": {
                "price_details": price.map_or(Value::Null, |p| json!({"price": p, "product": "prod_NeZe7xbBdJT8EN"})),
                "type": if price.is_some() { json!("price_details") } else { Value::Null },
                "unit_amount_decimal": (amount / quantity).to_string()
            },
            "proration": false,
            "quantity": quantity,
            "tax_rates": [],
            "test_clock": null
        }),
    )
}

/// A route with Stripe's common rules, answering through `answer` once
/// per Idempotency-Key.
fn route(
    path: &str,
    shape: fn(&Request) -> Result<(), String>,
    account: &Arc<Account>,
    answer: fn(&Request, &Account) -> Reply,
) -> Route {
    let account = account.clone();
    Route::post(path)
        .auth(|r| r.bearer() == Some(KEY), |_| invalid_key())
        .content_type("application/x-www-form-urlencoded")
        .header("stripe-version", VERSION)
        .check(|r| match r.header("idempotency-key") {
            Some(k) if !k.is_empty() && k.len() <= 255 => Ok(()),
            other => Err(format!(
                "Idempotency-Key must be 1 to 255 characters, got {other:?}"
            )),
        })
        .check(shape)
        .reply(move |r| {
            let key = r.header("idempotency-key").unwrap_or_default().to_string();
            let seen = account.answers.lock().expect("lock").get(&key).cloned();
            match seen {
                Some(first) => first.with_header("Idempotent-Replayed", "true"),
                None => {
                    let reply = answer(r, &account);
                    account
                        .answers
                        .lock()
                        .expect("lock")
                        .insert(key, reply.clone());
                    reply
                }
            }
        })
}

pub fn routes(account: Arc<Account>) -> Vec<Route> {
    vec![
        route("/v1/customers", customer_shape, &account, customer),
        route("/v1/refunds", refund_shape, &account, refund),
        route(
            "/v1/invoiceitems",
            invoice_item_shape,
            &account,
            invoice_item,
        ),
    ]
}
