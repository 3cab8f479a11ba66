//! The compiled form of a schema: fields, their validation rules and entity checks.

use mlua::Function;
use serde_json::Value as Json;

/// A field's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Type {
    String,
    Number,
    Integer,
    Boolean,
    Array,
    Set,
    Map,
    Record,
    Json,
    Foreign,
    Function,
    /// Internal: the partial definitions of `conditional` checks that name no type.
    Any,
}

impl Type {
    /// The type named `s` in a schema (Kong's valid types).
    pub(crate) fn parse(s: &str) -> Option<Type> {
        Some(match s {
            "string" => Type::String,
            "number" => Type::Number,
            "integer" => Type::Integer,
            "boolean" => Type::Boolean,
            "array" => Type::Array,
            "set" => Type::Set,
            "map" => Type::Map,
            "record" => Type::Record,
            "json" => Type::Json,
            "foreign" => Type::Foreign,
            "function" => Type::Function,
            _ => return None,
        })
    }

    /// The name used in schemas.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Type::String => "string",
            Type::Number => "number",
            Type::Integer => "integer",
            Type::Boolean => "boolean",
            Type::Array => "array",
            Type::Set => "set",
            Type::Map => "map",
            Type::Record => "record",
            Type::Json => "json",
            Type::Foreign => "foreign",
            Type::Function => "function",
            Type::Any => "any",
        }
    }
}

/// One field definition.
pub(crate) struct Field {
    pub ty: Type,
    /// Effective `required` (records inside the config record default to required, as Kong
    /// makes them so that their defaults are filled in).
    pub required: bool,
    /// The default value, JSON null excluded.
    pub default: Option<Json>,
    pub elements: Option<Box<Field>>,
    pub keys: Option<Box<Field>>,
    pub values: Option<Box<Field>>,
    /// The fields of a record.
    pub record: Option<Record>,
    pub rules: Rules,
    /// Replaces the message of any failed rule.
    pub err: Option<String>,
    /// Vault references (`{vault://...}`) skip the rules.
    pub referenceable: bool,
    /// `auto = true`: a missing uuid/string field is generated.
    pub auto: bool,
    /// `uuid = true` (also a rule; kept here for `auto`).
    pub uuid: bool,
}

impl Field {
    /// A field of the given type with no attributes.
    pub(crate) fn plain(ty: Type) -> Field {
        Field {
            ty,
            required: false,
            default: None,
            elements: None,
            keys: None,
            values: None,
            record: None,
            rules: Rules::default(),
            err: None,
            referenceable: false,
            auto: false,
            uuid: false,
        }
    }
}

/// The fields of a record with its entity checks and shorthand fields.
#[derive(Default)]
pub(crate) struct Record {
    pub fields: Vec<(String, Field)>,
    pub checks: Vec<EntityCheck>,
    pub shorthands: Vec<Shorthand>,
}

impl Record {
    /// The field at a dotted path (`a.b.c`) through nested records.
    pub(crate) fn lookup(&self, path: &str) -> Option<&Field> {
        let (head, rest) = match path.split_once('.') {
            Some((h, r)) => (h, Some(r)),
            None => (path, None),
        };
        let field = self
            .fields
            .iter()
            .find(|(n, _)| n == head)
            .map(|(_, f)| f)?;
        match rest {
            None => Some(field),
            Some(rest) => field.record.as_ref()?.lookup(rest),
        }
    }
}

/// A `shorthand_fields` entry: an input-only field turned into other fields by `func`.
pub(crate) struct Shorthand {
    pub name: String,
    pub field: Field,
    pub func: Function,
    /// With `deprecation`, values already present win over the shorthand's.
    pub deprecated: bool,
}

/// A Lua pattern with an optional custom message (`match_all`, `match_none`).
pub(crate) struct Pattern {
    pub pattern: Vec<u8>,
    pub err: Option<String>,
}

/// The validators of a field, run in Kong's order.
#[derive(Default)]
pub(crate) struct Rules {
    pub eq: Option<Json>,
    pub ne: Option<Json>,
    pub not_one_of: Option<Vec<Json>>,
    pub one_of: Option<Vec<Json>>,
    pub gt: Option<f64>,
    pub timestamp: bool,
    pub uuid: bool,
    pub is_regex: bool,
    pub between: Option<(f64, f64)>,
    pub len_eq: Option<i64>,
    pub len_min: Option<i64>,
    pub len_max: Option<i64>,
    pub starts_with: Option<String>,
    pub not_match: Option<Vec<u8>>,
    pub match_none: Vec<Pattern>,
    pub matches: Option<Vec<u8>>,
    pub match_all: Vec<Pattern>,
    pub match_any: Option<(Vec<Vec<u8>>, Option<String>)>,
    pub contains: Option<Json>,
    pub custom_validator: Option<Function>,
    pub mutually_exclusive_subsets: Option<Vec<Vec<Json>>>,
}

/// One entry of `entity_checks`.
pub(crate) struct EntityCheck {
    pub kind: CheckKind,
    /// The fields the check reads (dotted paths relative to the record).
    pub fields: Vec<String>,
    /// Fields that must be present (not nil) for the check to run.
    pub required: Vec<String>,
    pub run_with_missing: bool,
    pub run_with_invalid: bool,
}

/// What an entity check verifies.
pub(crate) enum CheckKind {
    AtLeastOneOf(Vec<String>),
    OnlyOneOf(Vec<String>),
    Distinct(Vec<String>),
    MutuallyRequired(Vec<String>),
    MutuallyExclusive(Vec<String>),
    MutuallyExclusiveSets(Vec<String>, Vec<String>),
    Conditional(Box<Conditional>),
    ConditionalAtLeastOneOf(Box<ConditionalAtLeastOneOf>),
    Custom {
        sources: Vec<String>,
        func: Function,
    },
}

/// `conditional = { if_field, if_match, then_field, then_match, then_err }`.
pub(crate) struct Conditional {
    pub if_field: String,
    pub if_match: Field,
    pub then_field: String,
    pub then_match: Field,
    /// `then_match.required == true` as written (not inherited from the field).
    pub then_required: bool,
    pub then_err: Option<String>,
}

/// `conditional_at_least_one_of = { if_field, if_match, then_at_least_one_of, then_err,
/// else_match, else_then_at_least_one_of, else_then_err }`.
pub(crate) struct ConditionalAtLeastOneOf {
    pub if_field: String,
    pub if_match: Field,
    pub then_at_least_one_of: Vec<String>,
    pub then_err: Option<String>,
    pub else_match: Option<Field>,
    pub else_then_at_least_one_of: Vec<String>,
    pub else_then_err: Option<String>,
}
