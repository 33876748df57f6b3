//! localstripe, the Stripe emulator, as a private process.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;

/// A private `localstripe` (the Stripe emulator) on a free port, killed on
/// drop. `scripts/test.sh` installs it into `.venv`.
pub struct Localstripe {
    child: Child,
    port: u16,
}

impl Localstripe {
    pub fn start() -> Self {
        let bin = std::env::var("LOCALSTRIPE_BIN")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/localstripe").to_owned());
        assert!(
            std::path::Path::new(&bin).exists(),
            "{bin} is missing: run scripts/test.sh (it installs localstripe into .venv)"
        );
        for _ in 0..10 {
            let port = free_port();
            let mut child = Command::new(&bin)
                .args(["--port", &port.to_string(), "--from-scratch"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self { child, port };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("localstripe did not start");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Localstripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// localstripe and a client of its API, for tests that need Stripe to
/// hold real customers and invoices.
pub struct Emulator {
    pub ls: Localstripe,
    pub http: reqwest::Client,
}

impl Emulator {
    pub fn start() -> Self {
        Self { ls: Localstripe::start(), http: reqwest::Client::new() }
    }

    pub async fn call(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let res = self
            .http
            .post(format!("{}{path}", self.ls.url()))
            .bearer_auth("sk_test_pastdue")
            .form(form)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.unwrap_or(Value::Null)
    }

    /// A customer whose SEPA debit fails (localstripe's failing IBAN), with a
    /// monthly subscription: its first invoice fails asynchronously.
    pub async fn failing_customer(&self, account: &str) -> String {
        let cus = self.call("/v1/customers", &[("email", "billing@team.test"), ("metadata[account_id]", account)]).await;
        let cus = cus["id"].as_str().unwrap().to_owned();
        let pm = self
            .call("/v1/payment_methods", &[("type", "sepa_debit"), ("sepa_debit[iban]", "DE62370400440532013001"), ("billing_details[name]", "Team"), ("billing_details[email]", "billing@team.test")])
            .await;
        let pm = pm["id"].as_str().unwrap().to_owned();
        self.call(&format!("/v1/payment_methods/{pm}/attach"), &[("customer", &cus)]).await;
        self.call(&format!("/v1/customers/{cus}"), &[("invoice_settings[default_payment_method]", &pm)]).await;
        let product = self.call("/v1/products", &[("name", "Pro")]).await;
        let plan = self
            .call("/v1/plans", &[("amount", "1200"), ("currency", "eur"), ("interval", "month"), ("product", product["id"].as_str().unwrap())])
            .await;
        self.call("/v1/subscriptions", &[("customer", &cus), ("items[0][plan]", plan["id"].as_str().unwrap())]).await;
        cus
    }

    pub async fn get(&self, path: &str) -> Value {
        let res = self.http.get(format!("{}{path}", self.ls.url())).bearer_auth("sk_test_pastdue").send().await.unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.unwrap()
    }

    /// The customer's newest invoice id, once the emulator has made one.
    pub async fn invoice_of(&self, customer: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let list = self.get("/v1/invoices?limit=100").await;
            let found = list["data"].as_array().unwrap().iter().find(|i| i["customer"] == customer).and_then(|i| i["id"].as_str()).map(str::to_owned);
            if let Some(id) = found {
                return id;
            }
            assert!(tokio::time::Instant::now() < deadline, "no invoice for {customer}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Pays `invoice` with a working card, the way a customer would in the
    /// portal: a new default payment method, then the invoice's pay call.
    pub async fn pay_with_card(&self, customer: &str, invoice: &str) {
        let pm = self
            .call("/v1/payment_methods", &[("type", "card"), ("card[number]", "4242424242424242"), ("card[exp_month]", "12"), ("card[exp_year]", "2040"), ("card[cvc]", "123")])
            .await;
        let pm = pm["id"].as_str().unwrap().to_owned();
        self.call(&format!("/v1/payment_methods/{pm}/attach"), &[("customer", customer)]).await;
        self.call(&format!("/v1/customers/{customer}"), &[("invoice_settings[default_payment_method]", &pm)]).await;
        self.call(&format!("/v1/invoices/{invoice}/pay"), &[]).await;
        assert_eq!(self.get(&format!("/v1/invoices/{invoice}")).await["status"], "paid");
    }
}
