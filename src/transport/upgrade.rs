//! WebSocket upgrades: actix-web decides, Stoa owns the socket.
//!
//! actix-http hands every request that asks for a WebSocket to this service together with
//! the connection itself. The request still goes through the whole application (routing,
//! middleware, the endpoint's checks), and its answer is written as it would be; when the
//! answer is a 101 carrying an [`Accepted`], the connection is then taken over: the HTTP
//! codec and its buffers are dropped, and the socket is read and written by
//! [`Incoming`] and [`Writer`] for the rest of its life. Any other answer (a refusal) is
//! written and the connection closed.

use std::future::poll_fn;
use std::pin::Pin;
use std::rc::Rc;

use actix_codec::{Framed, FramedParts};
use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::{h1, ConnectionType, Request, Response, StatusCode};
use actix_service::boxed::{BoxService, BoxServiceFactory};
use actix_service::{fn_factory, fn_service, Service, ServiceFactory};
use actix_web::dev::ServiceResponse;
use actix_web::rt::net::TcpStream;
use actix_web::web::BytesMut;
use stoa_actors::{Realtime, SessionActor, SocketPermit, YjsSession};

use super::{Incoming, Writer};

type AppService = BoxService<Request, ServiceResponse<BoxBody>, actix_web::Error>;
pub type AppFactory =
    BoxServiceFactory<(), Request, ServiceResponse<BoxBody>, actix_web::Error, ()>;
type Conn = Framed<TcpStream, h1::Codec>;

/// What an accepted upgrade hands the transport, in its 101 answer's extensions: the
/// user's socket slot, when their token expires, and what the socket speaks.
pub struct Accepted {
    pub permit: SocketPermit,
    pub expires_at: i64,
    pub kind: SocketKind,
}

/// The protocol of an accepted socket.
pub enum SocketKind {
    /// Phoenix Channels (`/socket/websocket`).
    Channels,
    /// y-websocket on one document (`/yjs/{document_id}`); `writable` is false for viewers,
    /// as decided by a check that began at `authorized_at`.
    Yjs {
        document: i64,
        workspace: i64,
        writable: bool,
        authorized_at: std::time::Instant,
    },
}

/// The upgrade service of one worker, answering through its own instance of the app.
pub fn service(
    app: AppFactory,
    realtime: Realtime,
) -> impl ServiceFactory<
    (Request, Conn),
    Config = (),
    Response = (),
    Error = actix_web::Error,
    InitError = (),
> {
    fn_factory(move || {
        let app = app.new_service(());
        let realtime = realtime.clone();
        async move {
            let app: Rc<AppService> = Rc::new(app.await?);
            Ok(fn_service(move |(req, conn): (Request, Conn)| {
                upgrade(app.clone(), realtime.clone(), req, conn)
            }))
        }
    })
}

async fn upgrade(
    app: Rc<AppService>,
    realtime: Realtime,
    req: Request,
    mut conn: Conn,
) -> Result<(), actix_web::Error> {
    // Boxed: the app's future is large and is only needed for the handshake.
    let mut answer = match Box::pin(app.call(req)).await {
        Ok(res) => res.into_parts().1,
        Err(e) => e.error_response(),
    };
    let accepted = answer.extensions_mut().remove::<Accepted>();
    let answer: Response<BoxBody> = answer.into();
    let (mut head, body) = answer.into_parts();
    match accepted {
        Some(accepted) if head.status() == StatusCode::SWITCHING_PROTOCOLS => {
            write(&mut conn, head, BodySize::None, None).await?;
            // Only the bytes the client sent behind its request are kept: the codec and
            // its buffers go now, not with the connection.
            let FramedParts {
                io,
                codec,
                read_buf,
                write_buf,
                ..
            } = conn.into_parts();
            let early = BytesMut::from(&read_buf[..]);
            drop((codec, read_buf, write_buf));
            // A task of its own: the HTTP connection's task (the dispatcher, about 2.7 KB)
            // ends here instead of living as long as the socket.
            actix_web::rt::spawn(serve(io, early, accepted, realtime));
        }
        _ => {
            let body = actix_web::body::to_bytes(body).await.unwrap_or_default();
            head.head_mut().set_connection_type(ConnectionType::Close);
            let size = BodySize::Sized(body.len() as u64);
            write(&mut conn, head, size, Some(body)).await?;
        }
    }
    Ok(())
}

/// Writes an HTTP answer through the connection's codec.
async fn write(
    conn: &mut Conn,
    head: Response<()>,
    size: BodySize,
    body: Option<actix_web::web::Bytes>,
) -> Result<(), actix_web::Error> {
    let mut conn = Pin::new(conn);
    conn.as_mut().write(h1::Message::Item((head, size)))?;
    if let Some(body) = body {
        if !body.is_empty() {
            conn.as_mut().write(h1::Message::Chunk(Some(body)))?;
        }
        conn.as_mut().write(h1::Message::Chunk(None))?;
    }
    poll_fn(|cx| conn.as_mut().flush(cx)).await?;
    Ok(())
}

/// The rest of an accepted socket's life: its session reads, this task writes.
async fn serve(io: TcpStream, early: BytesMut, accepted: Accepted, realtime: Realtime) {
    let io = Rc::new(io);
    let limit = match accepted.kind {
        SocketKind::Channels => realtime.limits().max_frame_bytes,
        SocketKind::Yjs { .. } => realtime.limits().max_yjs_message_bytes,
    };
    let incoming = Incoming::new(io.clone(), early, limit);
    let outbox = match accepted.kind {
        SocketKind::Channels => {
            SessionActor::start(&realtime, accepted.permit, accepted.expires_at, incoming).1
        }
        SocketKind::Yjs {
            document,
            workspace,
            writable,
            authorized_at,
        } => {
            let started = YjsSession::start(
                &realtime,
                accepted.permit,
                document,
                workspace,
                writable,
                accepted.expires_at,
                authorized_at,
                incoming,
            );
            match started {
                Some(outbox) => outbox,
                None => return,
            }
        }
    };
    Writer::new(io, realtime, outbox).run().await;
}

/// Boxes an app factory (configured per worker) for [`service`] and the HTTP service.
pub fn boxed<F, B>(app: F) -> AppFactory
where
    F: ServiceFactory<
            Request,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    F::Service: 'static,
    B: MessageBody + 'static,
{
    actix_service::boxed::factory(actix_service::ServiceFactoryExt::map(
        app,
        ServiceResponse::map_into_boxed_body,
    ))
}
