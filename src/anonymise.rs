//! The anonymised values, in one place (DESIGN §4). They are WooCommerce's own eraser's
//! values, so the admin screens, other plugins and the HPOS sync understand the result.
//! Nothing here derives from the original value except a phone number's format.

/// Any free text: names, streets, notes, user agents.
pub const TEXT: &str = "[deleted]";
/// An email where no uniqueness is needed (orders, reviews, analytics).
pub const EMAIL: &str = "deleted@site.invalid";
/// An IP address. WooCommerce keeps the /24 network, which is still personal data.
pub const IP: &str = "0.0.0.0";
/// The order note an anonymised or minimised order keeps instead of its notes.
pub const ORDER_NOTE: &str = "Personal data removed.";
/// Login names and unique emails are `anonymised-<user id>`: WordPress needs them unique.
pub const LOGIN_PREFIX: &str = "anonymised-";
/// ... and the domain of the unique email.
pub const LOGIN_DOMAIN: &str = "@site.invalid";

/// SQL expression: `col`'s anonymised text where it holds a value, else unchanged, so an
/// empty field stays empty in both storages (WooCommerce stores none for it).
pub fn text_sql(col: &str) -> String {
    replace_sql(col, &format!("'{TEXT}'"))
}

pub fn email_sql(col: &str) -> String {
    replace_sql(col, &format!("'{EMAIL}'"))
}

pub fn ip_sql(col: &str) -> String {
    replace_sql(col, &format!("'{IP}'"))
}

/// A phone keeps its format with every digit replaced by 0, as WooCommerce does.
pub fn phone_sql(col: &str) -> String {
    format!("REGEXP_REPLACE({col}, '[0-9]', '0')")
}

/// State and country become empty.
pub fn empty_sql(col: &str) -> String {
    replace_sql(col, "''")
}

fn replace_sql(col: &str, value: &str) -> String {
    format!("IF({col} IS NULL OR {col} = '', {col}, {value})")
}

/// What an address field becomes when the address is anonymised.
pub fn address_field_sql(field: &str, col: &str) -> String {
    match field {
        "email" => email_sql(col),
        "phone" => phone_sql(col),
        "state" | "country" => empty_sql(col),
        _ => text_sql(col),
    }
}

/// WooCommerce's address fields in the order its `_billing_address_index` joins them;
/// the shipping index leaves out the email.
pub const ADDRESS_FIELDS: [&str; 11] = [
    "first_name",
    "last_name",
    "company",
    "address_1",
    "address_2",
    "city",
    "state",
    "postcode",
    "country",
    "email",
    "phone",
];

/// The address fields of one kind (`billing` or `shipping`) in index order.
pub fn address_fields(kind: &str) -> impl Iterator<Item = &'static str> + '_ {
    ADDRESS_FIELDS
        .into_iter()
        .filter(move |f| !(kind == "shipping" && *f == "email"))
}

/// Which fields an invoice keeps while it is retained: the billing name, company, address
/// and country (VAT number, totals, tax and lines live elsewhere and are not touched).
pub fn kept_on_invoice(field: &str) -> bool {
    !matches!(field, "email" | "phone")
}

/// A fresh random value for a replaced password hash: nobody knows a password for it.
pub fn random_token() -> String {
    let mut bytes = [0u8; 24];
    // Without an OS random source a fixed token is still no one's password hash.
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_stay_empty() {
        assert_eq!(text_sql("x"), "IF(x IS NULL OR x = '', x, '[deleted]')");
        assert_eq!(address_field_sql("country", "c"), "IF(c IS NULL OR c = '', c, '')");
        assert_eq!(address_fields("shipping").count(), 10);
        assert_eq!(address_fields("billing").count(), 11);
    }

    #[test]
    fn random_tokens_differ() {
        assert_ne!(random_token(), random_token());
        assert_eq!(random_token().len(), 48);
    }
}
