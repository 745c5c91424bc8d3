//! What router handlers take and return: the whole message, the payload as
//! bytes, as text or as JSON ([`Json`]), and the reply types.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use webwire_proto::{Payload, Request, Signal};

use crate::{HandlerError, ReplyError};

/// A typed payload, read from and written as UTF-8 JSON (serde).
///
/// As a handler argument, the payload (of any encoding: binary, UTF-8 or
/// UTF-16) is parsed as JSON; a payload that does not parse is answered
/// with an error reply, code [`ReplyError::INVALID_PAYLOAD`]. As a reply,
/// the value is serialized into a UTF-8 payload.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use webwire_server::{Connection, Json, ReplyError, MessageRouter};
///
/// #[derive(Deserialize)]
/// struct Add { a: i64, b: i64 }
/// #[derive(Serialize)]
/// struct Sum { sum: i64 }
///
/// let router = MessageRouter::new().request("add", |_conn: Connection, Json(add): Json<Add>| async move {
///     Ok::<_, ReplyError>(Json(Sum { sum: add.a + add.b }))
/// });
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

/// A value a request handler can take: made from the request, or refused
/// with a request error (sent to the client as an error reply).
pub trait FromRequest: Sized {
    /// Extracts the value.
    fn from_request(request: Request) -> Result<Self, ReplyError>;
}

/// A value a signal handler can take: made from the signal, or refused
/// (the signal is then dropped and the refusal logged).
pub trait FromSignal: Sized {
    /// Extracts the value.
    fn from_signal(signal: Signal) -> Result<Self, ReplyError>;
}

impl FromRequest for Request {
    fn from_request(request: Request) -> Result<Self, ReplyError> {
        Ok(request)
    }
}

impl FromSignal for Signal {
    fn from_signal(signal: Signal) -> Result<Self, ReplyError> {
        Ok(signal)
    }
}

/// Values made from the payload alone, for requests and signals alike.
trait FromPayload: Sized {
    fn from_payload(payload: Payload) -> Result<Self, ReplyError>;
}

impl FromPayload for Payload {
    fn from_payload(payload: Payload) -> Result<Self, ReplyError> {
        Ok(payload)
    }
}

impl FromPayload for Bytes {
    fn from_payload(payload: Payload) -> Result<Self, ReplyError> {
        Ok(payload.into_bytes())
    }
}

impl FromPayload for String {
    fn from_payload(payload: Payload) -> Result<Self, ReplyError> {
        payload
            .to_text()
            .map(|text| text.into_owned())
            .map_err(|err| ReplyError::from_static(ReplyError::INVALID_PAYLOAD, err.to_string()))
    }
}

impl<T: DeserializeOwned> FromPayload for Json<T> {
    fn from_payload(payload: Payload) -> Result<Self, ReplyError> {
        let invalid = |err: &dyn std::fmt::Display| {
            ReplyError::from_static(ReplyError::INVALID_PAYLOAD, err.to_string())
        };
        let value = match payload.encoding() {
            webwire_proto::Encoding::Utf16 => {
                let text = payload.to_text().map_err(|err| invalid(&err))?;
                serde_json::from_str(&text)
            }
            _ => serde_json::from_slice(payload.as_bytes()),
        };
        value.map(Json).map_err(|err| invalid(&err))
    }
}

macro_rules! from_payload {
    ($($ty:ty),*) => {
        $(
            impl FromRequest for $ty {
                fn from_request(request: Request) -> Result<Self, ReplyError> {
                    FromPayload::from_payload(request.into_parts().2)
                }
            }
            impl FromSignal for $ty {
                fn from_signal(signal: Signal) -> Result<Self, ReplyError> {
                    FromPayload::from_payload(signal.into_parts().1)
                }
            }
        )*
    };
}

from_payload!(Payload, Bytes, String);

impl<T: DeserializeOwned> FromRequest for Json<T> {
    fn from_request(request: Request) -> Result<Self, ReplyError> {
        FromPayload::from_payload(request.into_parts().2)
    }
}

impl<T: DeserializeOwned> FromSignal for Json<T> {
    fn from_signal(signal: Signal) -> Result<Self, ReplyError> {
        FromPayload::from_payload(signal.into_parts().1)
    }
}

/// A value a request handler can reply with.
///
/// Strings are UTF-8 replies; bytes are binary replies; `()` is an empty
/// binary reply; [`Json`] is a UTF-8 JSON reply; a [`Payload`] keeps its
/// encoding.
pub trait IntoPayload {
    /// The reply's payload (fails only for a value that cannot be serialized).
    fn into_payload(self) -> Result<Payload, HandlerError>;
}

impl IntoPayload for Payload {
    fn into_payload(self) -> Result<Payload, HandlerError> {
        Ok(self)
    }
}

impl IntoPayload for String {
    fn into_payload(self) -> Result<Payload, HandlerError> {
        Ok(Payload::utf8(self))
    }
}

impl IntoPayload for &'static str {
    fn into_payload(self) -> Result<Payload, HandlerError> {
        Ok(Payload::from(self))
    }
}

impl IntoPayload for Bytes {
    fn into_payload(self) -> Result<Payload, HandlerError> {
        Ok(Payload::binary(self))
    }
}

impl IntoPayload for Vec<u8> {
    fn into_payload(self) -> Result<Payload, HandlerError> {
        Ok(Payload::binary(self))
    }
}

impl IntoPayload for () {
    fn into_payload(self) -> Result<Payload, HandlerError> {
        Ok(Payload::default())
    }
}

impl<T: Serialize> IntoPayload for Json<T> {
    fn into_payload(self) -> Result<Payload, HandlerError> {
        Ok(Payload::utf8(serde_json::to_string(&self.0)?))
    }
}

/// What a request handler's future resolves to: `Result<T, E>` with a
/// reply value `T` ([`IntoPayload`]) and any error `E` (a
/// [`ReplyError`] becomes an error reply; anything else an internal
/// error).
pub trait IntoReply {
    /// The reply's payload or the handler's error.
    fn into_reply(self) -> Result<Payload, HandlerError>;
}

impl<T, E> IntoReply for Result<T, E>
where
    T: IntoPayload,
    E: Into<HandlerError>,
{
    fn into_reply(self) -> Result<Payload, HandlerError> {
        self.map_err(Into::into)?.into_payload()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use webwire_proto::{Name, RequestId};

    fn request(payload: Payload) -> Request {
        Request::new(RequestId::from(1), Name::from_static("x"), payload).unwrap()
    }

    #[test]
    fn json_from_every_encoding() {
        #[derive(serde::Deserialize, PartialEq, Debug)]
        struct A {
            a: u8,
        }
        for payload in [
            Payload::utf8(r#"{"a":1}"#),
            Payload::binary(&br#"{"a":1}"#[..]),
            Payload::utf16(r#"{"a":1}"#),
        ] {
            let Json(value) = Json::<A>::from_request(request(payload)).unwrap();
            assert_eq!(value, A { a: 1 });
        }
        let err = Json::<A>::from_request(request(Payload::utf8("{"))).unwrap_err();
        assert_eq!(err.code(), ReplyError::INVALID_PAYLOAD);
    }

    #[test]
    fn text_refuses_invalid_utf8() {
        let err = String::from_request(request(Payload::binary(vec![0xff]))).unwrap_err();
        assert_eq!(err.code(), ReplyError::INVALID_PAYLOAD);
        assert_eq!(
            String::from_request(request(Payload::utf16("hé"))).unwrap(),
            "hé"
        );
    }

    #[test]
    fn replies() {
        let reply: Result<Json<u8>, ReplyError> = Ok(Json(3));
        assert_eq!(reply.into_reply().unwrap(), Payload::utf8("3"));
        let reply: Result<(), ReplyError> = Err(ReplyError::from_static("E", "m"));
        let err = reply.into_reply().unwrap_err();
        assert!(err.downcast_ref::<ReplyError>().is_some());
    }
}
