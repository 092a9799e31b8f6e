//! The typed layer over the envelope: [`Request`] and [`Response`], one variant per message.

use crate::frame;
use crate::messages::*;
use crate::wire::WardenMessage;
use crate::Error;

/// A request message: its envelope [`Type`] and the response it gets.
pub trait RequestMessage: WardenMessage + Into<Request> {
    /// The envelope type shared with its response.
    const TYPE: Type;
    /// The message the server answers with on success.
    type Response: ResponseMessage;
}

/// A response message (including [`ErrorResponse`]).
pub trait ResponseMessage: WardenMessage + Into<Response> {
    /// The envelope type shared with its request (`Type::Error` for [`ErrorResponse`]).
    const TYPE: Type;
    /// Takes this message out of `response`, or gives `response` back when it is another one.
    // The Err is the caller's own value handed back, not an error built here; a Response is
    // under 1 KiB (InfoResponse inline), so it is not boxed.
    #[allow(clippy::result_large_err)]
    fn from_response(response: Response) -> Result<Self, Response>;
}

macro_rules! protocol_types {
    ($($variant:ident: $req:ident => $resp:ident),* $(,)?) => {
        /// Any request, as the server receives it.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Request {
            $($variant($req),)*
        }

        /// Any response, as the client receives it.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Response {
            Error(ErrorResponse),
            $($variant($resp),)*
        }

        $(
            impl RequestMessage for $req {
                const TYPE: Type = Type::$variant;
                type Response = $resp;
            }

            impl ResponseMessage for $resp {
                const TYPE: Type = Type::$variant;
                fn from_response(response: Response) -> Result<Self, Response> {
                    match response {
                        Response::$variant(m) => Ok(m),
                        other => Err(other),
                    }
                }
            }

            impl From<$req> for Request {
                fn from(m: $req) -> Self {
                    Request::$variant(m)
                }
            }

            impl From<$resp> for Response {
                fn from(m: $resp) -> Self {
                    Response::$variant(m)
                }
            }
        )*

        impl Type {
            /// Every type, in ascending number.
            pub const ALL: &'static [Type] = &[Type::Error, $(Type::$variant),*];

            /// The request message's name (`"CreateRequest"`); `None` for `Error`.
            pub fn request_name(self) -> Option<&'static str> {
                match self {
                    Type::Error => None,
                    $(Type::$variant => Some(stringify!($req)),)*
                }
            }

            /// The response message's name (`"CreateResponse"`, `"ErrorResponse"`).
            pub fn response_name(self) -> &'static str {
                match self {
                    Type::Error => "ErrorResponse",
                    $(Type::$variant => stringify!($resp),)*
                }
            }
        }

        impl Request {
            /// The envelope type.
            pub fn message_type(&self) -> Type {
                match self {
                    $(Request::$variant(_) => Type::$variant,)*
                }
            }

            /// The message's name, e.g. `"CreateRequest"`.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(Request::$variant(_) => stringify!($req),)*
                }
            }

            /// The encoded request alone (the envelope's `payload`).
            pub fn encode_payload(&self) -> Vec<u8> {
                match self {
                    $(Request::$variant(m) => m.to_bytes(),)*
                }
            }

            /// Decodes the request an envelope carries. An unknown type, or `Error` (1), is
            /// [`Error::UnknownRequestType`]; a bad payload names the message and field.
            pub fn decode_envelope(envelope: &Message) -> Result<Self, Error> {
                let number = envelope.r#type;
                let ty = Type::try_from(number).map_err(|_| Error::UnknownRequestType(number))?;
                match ty {
                    Type::Error => Err(Error::UnknownRequestType(number)),
                    $(Type::$variant => $req::decode_checked(&envelope.payload).map(Request::$variant),)*
                }
            }
        }

        impl Response {
            /// The envelope type.
            pub fn message_type(&self) -> Type {
                match self {
                    Response::Error(_) => Type::Error,
                    $(Response::$variant(_) => Type::$variant,)*
                }
            }

            /// The message's name, e.g. `"CreateResponse"` or `"ErrorResponse"`.
            pub fn type_name(&self) -> &'static str {
                match self {
                    Response::Error(_) => "ErrorResponse",
                    $(Response::$variant(_) => stringify!($resp),)*
                }
            }

            /// The encoded response alone (the envelope's `payload`).
            pub fn encode_payload(&self) -> Vec<u8> {
                match self {
                    Response::Error(m) => m.to_bytes(),
                    $(Response::$variant(m) => m.to_bytes(),)*
                }
            }

            /// Decodes the response an envelope carries. An unknown type is
            /// [`Error::UnknownResponseType`]; a bad payload names the message and field.
            pub fn decode_envelope(envelope: &Message) -> Result<Self, Error> {
                let number = envelope.r#type;
                let ty = Type::try_from(number).map_err(|_| Error::UnknownResponseType(number))?;
                match ty {
                    Type::Error => ErrorResponse::decode_checked(&envelope.payload).map(Response::Error),
                    $(Type::$variant => $resp::decode_checked(&envelope.payload).map(Response::$variant),)*
                }
            }
        }
    };
}

protocol_types! {
    Create: CreateRequest => CreateResponse,
    Stop: StopRequest => StopResponse,
    Destroy: DestroyRequest => DestroyResponse,
    Info: InfoRequest => InfoResponse,
    Spawn: SpawnRequest => SpawnResponse,
    Link: LinkRequest => LinkResponse,
    Run: RunRequest => RunResponse,
    Stream: StreamRequest => StreamResponse,
    NetIn: NetInRequest => NetInResponse,
    NetOut: NetOutRequest => NetOutResponse,
    CopyIn: CopyInRequest => CopyInResponse,
    CopyOut: CopyOutRequest => CopyOutResponse,
    LimitMemory: LimitMemoryRequest => LimitMemoryResponse,
    LimitDisk: LimitDiskRequest => LimitDiskResponse,
    LimitBandwidth: LimitBandwidthRequest => LimitBandwidthResponse,
    LimitCpu: LimitCpuRequest => LimitCpuResponse,
    Ping: PingRequest => PingResponse,
    List: ListRequest => ListResponse,
    Echo: EchoRequest => EchoResponse,
}

impl ResponseMessage for ErrorResponse {
    const TYPE: Type = Type::Error;
    fn from_response(response: Response) -> Result<Self, Response> {
        match response {
            Response::Error(m) => Ok(m),
            other => Err(other),
        }
    }
}

impl From<ErrorResponse> for Response {
    fn from(m: ErrorResponse) -> Self {
        Response::Error(m)
    }
}

impl Request {
    /// The envelope carrying this request.
    pub fn to_envelope(&self) -> Message {
        Message {
            r#type: self.message_type() as i32,
            payload: self.encode_payload(),
        }
    }

    /// The encoded envelope: what goes between a frame's length line and its trailer.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        self.to_envelope().to_bytes()
    }

    /// The whole frame on the wire: `<len>\r\n<envelope>\r\n`.
    pub fn to_frame(&self) -> Vec<u8> {
        frame::frame(&self.encode_to_vec())
    }

    /// Decodes an encoded envelope (a frame's payload) into a request.
    pub fn decode(envelope: &[u8]) -> Result<Self, Error> {
        Self::decode_envelope(&Message::decode_checked(envelope)?)
    }

    /// The handle of the existing container the request addresses: `None` for Create (whose
    /// optional handle names a container still to be made), Ping, List and Echo.
    pub fn container_handle(&self) -> Option<&str> {
        match self {
            Request::Create(_) | Request::Ping(_) | Request::List(_) | Request::Echo(_) => None,
            Request::Stop(m) => Some(&m.handle),
            Request::Destroy(m) => Some(&m.handle),
            Request::Info(m) => Some(&m.handle),
            Request::Spawn(m) => Some(&m.handle),
            Request::Link(m) => Some(&m.handle),
            Request::Run(m) => Some(&m.handle),
            Request::Stream(m) => Some(&m.handle),
            Request::NetIn(m) => Some(&m.handle),
            Request::NetOut(m) => Some(&m.handle),
            Request::CopyIn(m) => Some(&m.handle),
            Request::CopyOut(m) => Some(&m.handle),
            Request::LimitMemory(m) => Some(&m.handle),
            Request::LimitDisk(m) => Some(&m.handle),
            Request::LimitBandwidth(m) => Some(&m.handle),
            Request::LimitCpu(m) => Some(&m.handle),
        }
    }
}

impl Response {
    /// An `ErrorResponse` with only `message` set, as the server sends.
    pub fn error(message: impl Into<String>) -> Self {
        Response::Error(ErrorResponse {
            message: Some(message.into()),
            ..Default::default()
        })
    }

    /// Whether this is an `ErrorResponse`.
    pub fn is_error(&self) -> bool {
        matches!(self, Response::Error(_))
    }

    /// The envelope carrying this response.
    pub fn to_envelope(&self) -> Message {
        Message {
            r#type: self.message_type() as i32,
            payload: self.encode_payload(),
        }
    }

    /// The encoded envelope: what goes between a frame's length line and its trailer.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        self.to_envelope().to_bytes()
    }

    /// The whole frame on the wire: `<len>\r\n<envelope>\r\n`.
    pub fn to_frame(&self) -> Vec<u8> {
        frame::frame(&self.encode_to_vec())
    }

    /// Decodes an encoded envelope (a frame's payload) into a response.
    pub fn decode(envelope: &[u8]) -> Result<Self, Error> {
        Self::decode_envelope(&Message::decode_checked(envelope)?)
    }
}
