//! The daemon's [`Handler`]: answers ping, echo and list itself; container requests go to the
//! container manager ([`crate::manager::Manager`], which uses this for the requests above). On
//! its own (tests of the server), container requests are answered `<Name> is not implemented yet`.

use std::sync::Arc;

use warden_protocol::{EchoResponse, ListResponse, PingResponse, Request, Response};

use crate::handler::{Handler, Reply, RequestContext};
use crate::registry::Registry;

/// Routes each request to what answers it.
#[derive(Debug)]
pub struct Dispatcher<C> {
    registry: Arc<Registry<C>>,
}

impl<C> Dispatcher<C> {
    /// A dispatcher over `registry` (shared with whoever creates and destroys containers).
    pub fn new(registry: Arc<Registry<C>>) -> Self {
        Dispatcher { registry }
    }

    /// The registry `list` reads.
    pub fn registry(&self) -> &Arc<Registry<C>> {
        &self.registry
    }

    /// The answer to a request that needs no container and no waiting.
    pub fn answer(&self, request: Request) -> Response {
        match request {
            Request::Ping(_) => PingResponse {}.into(),
            Request::Echo(m) => EchoResponse { message: m.message }.into(),
            Request::List(_) => ListResponse {
                handles: self.registry.handles(),
            }
            .into(),
            other => Response::error(format!("{} is not implemented yet", other.type_name())),
        }
    }
}

impl<C: Send + Sync + 'static> Handler for Dispatcher<C> {
    async fn handle(&self, _ctx: &RequestContext<'_>, request: Request) -> Reply {
        Reply::Single(self.answer(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_protocol::{CreateRequest, EchoRequest, ListRequest, PingRequest, StreamRequest};

    #[test]
    fn answers() {
        let registry: Arc<Registry<()>> = Arc::new(Registry::new());
        let d = Dispatcher::new(registry.clone());
        assert_eq!(d.answer(PingRequest {}.into()), PingResponse {}.into());
        let echo = EchoRequest {
            message: "hi".into(),
        };
        assert_eq!(
            d.answer(echo.into()),
            EchoResponse {
                message: "hi".into()
            }
            .into()
        );
        assert_eq!(
            d.answer(ListRequest {}.into()),
            ListResponse { handles: vec![] }.into()
        );
        registry.insert("h1", Arc::new(())).unwrap();
        assert_eq!(
            d.answer(ListRequest {}.into()),
            ListResponse {
                handles: vec!["h1".into()]
            }
            .into()
        );
        assert_eq!(
            d.answer(CreateRequest::default().into()),
            Response::error("CreateRequest is not implemented yet")
        );
        let stream = StreamRequest {
            handle: "h1".into(),
            job_id: 1,
        };
        assert_eq!(
            d.answer(stream.into()),
            Response::error("StreamRequest is not implemented yet")
        );
    }
}
