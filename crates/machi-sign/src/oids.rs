//! Object identifiers the crate checks, with where each comes from.
//!
//! JPKI (公的個人認証サービス, operated by J-LIS) arcs are under
//! `1.2.392.200149.8.5`. The signing certificate (署名用電子証明書) carries
//! the basic four items (基本4情報) in subjectAltName as `otherName` values
//! under `1.2.392.200149.8.5.5` and names the policy
//! `1.2.392.200149.8.5.1.1` in certificatePolicies; the authentication
//! certificate (利用者証明用電子証明書) uses `1.2.392.200149.8.5.1.3` and
//! carries no personal data (so it can never sign a filing here).
//! See docs/notes/wt-jpki.md for the sources.

use const_oid::ObjectIdentifier;

/// subjectAltName otherName: 氏名 (name, as on the 住民票).
pub const JPKI_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.392.200149.8.5.5.1");
/// subjectAltName otherName: 氏名の代替文字の使用位置情報 (where the name uses substitute characters).
pub const JPKI_NAME_SUBSTITUTE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.392.200149.8.5.5.2");
/// subjectAltName otherName: 性別 (sex).
pub const JPKI_SEX: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.392.200149.8.5.5.3");
/// subjectAltName otherName: 生年月日 (date of birth, `EYYYYMMDD`).
pub const JPKI_DATE_OF_BIRTH: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.392.200149.8.5.5.4");
/// subjectAltName otherName: 住所 (address).
pub const JPKI_ADDRESS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.392.200149.8.5.5.5");
/// subjectAltName otherName: 住所の代替文字の使用位置情報.
pub const JPKI_ADDRESS_SUBSTITUTE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.392.200149.8.5.5.6");
/// certificatePolicies: the JPKI signing-certificate policy (署名用電子証明書).
pub const JPKI_SIGNING_POLICY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.392.200149.8.5.1.1");
/// certificatePolicies: the JPKI authentication-certificate policy (利用者証明用電子証明書).
pub const JPKI_AUTH_POLICY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.392.200149.8.5.1.3");

/// RFC 5652 id-data.
pub const ID_DATA: ObjectIdentifier = const_oid::db::rfc5911::ID_DATA;
/// RFC 5652 id-signedData.
pub const ID_SIGNED_DATA: ObjectIdentifier = const_oid::db::rfc5911::ID_SIGNED_DATA;
/// RFC 5652 §11.1 content-type attribute.
pub const ID_CONTENT_TYPE: ObjectIdentifier = const_oid::db::rfc5911::ID_CONTENT_TYPE;
/// RFC 5652 §11.2 message-digest attribute.
pub const ID_MESSAGE_DIGEST: ObjectIdentifier = const_oid::db::rfc5911::ID_MESSAGE_DIGEST;
/// RFC 5652 §11.3 signing-time attribute.
pub const ID_SIGNING_TIME: ObjectIdentifier = const_oid::db::rfc5911::ID_SIGNING_TIME;

/// SHA-256 (NIST).
pub const SHA256: ObjectIdentifier = const_oid::db::rfc5912::ID_SHA_256;
/// rsaEncryption (PKCS #1): a key algorithm, also used by some CMS signers as the signature algorithm.
pub const RSA_ENCRYPTION: ObjectIdentifier = const_oid::db::rfc5912::RSA_ENCRYPTION;
/// sha256WithRSAEncryption (PKCS #1 v1.5).
pub const SHA256_WITH_RSA: ObjectIdentifier = const_oid::db::rfc5912::SHA_256_WITH_RSA_ENCRYPTION;
/// id-RSASSA-PSS (RFC 4055).
pub const RSASSA_PSS: ObjectIdentifier = const_oid::db::rfc5912::ID_RSASSA_PSS;
/// id-mgf1 (RFC 4055).
pub const MGF1: ObjectIdentifier = const_oid::db::rfc5912::ID_MGF_1;

/// X.509 extensions this crate understands (a critical extension outside
/// this list makes the certificate unacceptable, RFC 5280 §4.2).
pub const EXT_SUBJECT_KEY_ID: ObjectIdentifier =
    const_oid::db::rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER;
pub const EXT_KEY_USAGE: ObjectIdentifier = const_oid::db::rfc5280::ID_CE_KEY_USAGE;
pub const EXT_SUBJECT_ALT_NAME: ObjectIdentifier = const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME;
pub const EXT_ISSUER_ALT_NAME: ObjectIdentifier = const_oid::db::rfc5280::ID_CE_ISSUER_ALT_NAME;
pub const EXT_BASIC_CONSTRAINTS: ObjectIdentifier = const_oid::db::rfc5280::ID_CE_BASIC_CONSTRAINTS;
pub const EXT_CRL_DISTRIBUTION_POINTS: ObjectIdentifier =
    const_oid::db::rfc5280::ID_CE_CRL_DISTRIBUTION_POINTS;
pub const EXT_CERTIFICATE_POLICIES: ObjectIdentifier =
    const_oid::db::rfc5280::ID_CE_CERTIFICATE_POLICIES;
pub const EXT_AUTHORITY_KEY_ID: ObjectIdentifier =
    const_oid::db::rfc5280::ID_CE_AUTHORITY_KEY_IDENTIFIER;
pub const EXT_EXT_KEY_USAGE: ObjectIdentifier = const_oid::db::rfc5280::ID_CE_EXT_KEY_USAGE;
pub const EXT_AUTHORITY_INFO_ACCESS: ObjectIdentifier =
    const_oid::db::rfc5280::ID_PE_AUTHORITY_INFO_ACCESS;
pub const EXT_CRL_NUMBER: ObjectIdentifier = const_oid::db::rfc5280::ID_CE_CRL_NUMBER;
