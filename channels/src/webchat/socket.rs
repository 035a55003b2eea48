//! The widget's WebSocket: one task per connection, reading frames and forwarding live events.

use super::frames::{ClientFrame, ConversationView, MessageView, ServerFrame};
use super::http::{page, visitor_from};
use super::receive;
use super::WebChatState;
use crate::http_error::HttpError;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use super::LiveEvent;
use switchboard_models::Channel;

/// Frames above this are a protocol error and close the socket; text limits are checked
/// separately and answered with an error frame.
const MAX_FRAME_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
pub struct Connect {
    token: Option<String>,
}

pub async fn upgrade(
    State(state): State<WebChatState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Query(connect): Query<Connect>,
    ws: WebSocketUpgrade,
) -> Result<Response, HttpError> {
    let visitor = visitor_from(&state, connect.token.as_deref())?;
    let address = super::client_address(&state, peer.ip(), &headers);
    Ok(ws
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        // Small buffers keep idle widgets cheap; they grow when a frame needs it.
        .read_buffer_size(2048)
        .write_buffer_size(0)
        .on_upgrade(move |socket| session(socket, state, visitor, address)))
}

async fn session(socket: WebSocket, state: WebChatState, visitor: String, address: std::net::IpAddr) {
    let _open = switchboard_core::OpenGauge::new("switchboard_webchat_sockets");
    let (mut sink, mut stream) = socket.split();
    let opening = state.hub.opening().await;
    // What is stored before the socket subscribes the widget reads from history: another node's
    // news of it, however late, is not pushed again. One node has no such news.
    let caught_up_to = match state.engine.has_other_nodes() {
        true => match Box::pin(newest_seq(&state, &visitor)).await {
            Ok(seq) => seq,
            Err(error) => {
                let _ = send(&mut sink, &ServerFrame::error(error, None)).await;
                return;
            }
        },
        false => 0,
    };
    let mut subscription = state.hub.subscribe_socket(&visitor, state.settings.max_sockets_per_visitor, caught_up_to);
    let conversation = match Box::pin(current_conversation(&state, &visitor)).await {
        Ok(conversation) => conversation,
        Err(error) => {
            let _ = send(&mut sink, &ServerFrame::error(error, None)).await;
            return;
        }
    };
    if send(&mut sink, &ServerFrame::Ready { visitor_id: visitor.clone(), conversation }).await.is_err() {
        return;
    }
    drop(opening);
    // Frames are answered while the socket goes on sending replies and cues, and while it reads
    // the next frames: several of a customer's messages are classified side by side (each
    // waiting for the one before to be classified and stored let a quick typist's messages queue
    // unread under load). Each message takes its place in the customer's line as it is read, so
    // they are stored in the order sent; answers go out in the order of their frames.
    let mut answering = InFlight::default();
    loop {
        let outgoing = tokio::select! {
            // Answers first (the oldest frame's, in the order read), then replies and cues,
            // reading more frames last. A send behind a slow earlier frame may see its reply
            // arrive before its ack; the widget keeps each message once.
            biased;
            answered = answering.next() => match answered {
                Some(frame) => frame,
                None => continue,
            },
            event = subscription.events.recv() => match event {
                Some(LiveEvent::Message(message)) => match Box::pin(MessageView::with_authors(state.engine.accounts(), std::slice::from_ref(&*message))).await {
                    Ok(mut views) => ServerFrame::Message { message: views.remove(0) },
                    Err(_) => ServerFrame::Message { message: MessageView::from(&*message) },
                },
                Some(LiveEvent::Typing(on)) => ServerFrame::Typing { on, name: None },
                Some(LiveEvent::AgentTyping(name)) => ServerFrame::Typing { on: true, name: Some(name.to_string()) },
                Some(LiveEvent::Seen(seq)) => ServerFrame::Seen { seq },
                Some(LiveEvent::Displaced) => {
                    Box::pin(finish(answering, Some(&mut sink))).await;
                    let close = CloseFrame { code: 1008, reason: "Too many open chats for this visitor; this, the oldest, was closed".into() };
                    let _ = sink.send(WsMessage::Close(Some(close))).await;
                    return;
                }
                Some(LiveEvent::Conversation(conversation)) => {
                    ServerFrame::Conversation { conversation: ConversationView::from(&*conversation) }
                }
                // Dropped for falling behind: close, and the widget resyncs on reconnect.
                None => {
                    Box::pin(finish(answering, None)).await;
                    return;
                }
            },
            _ = state.closing.cancelled() => {
                Box::pin(finish(answering, Some(&mut sink))).await;
                // 1012 "service restart": the widget reconnects shortly and resends what is unacknowledged.
                let close = CloseFrame { code: 1012, reason: "Switchboard is restarting; reconnect in a few seconds".into() };
                let _ = sink.send(WsMessage::Close(Some(close))).await;
                return;
            }
            incoming = stream.next(), if answering.has_room() => match incoming {
                // Boxed, as are the other calls into the engine: an idle socket's task then holds
                // only what waiting needs, not the largest answer's state (memory per widget).
                // Not once a stop has begun: unacknowledged, it is sent again after the widget
                // reconnects, rather than answered after the outbox's last pass.
                Some(Ok(WsMessage::Text(text))) if !state.closing.is_cancelled() => {
                    let frame = serde_json::from_str::<ClientFrame>(text.as_str());
                    let arrival = matches!(frame, Ok(ClientFrame::Send { .. })).then(|| state.engine.arrival(Channel::WebChat, &visitor));
                    let (state, visitor) = (&state, visitor.as_str());
                    answering.push(Box::pin(async move { answer(state, visitor, address, frame, arrival).await }));
                    continue;
                }
                Some(Ok(WsMessage::Binary(_))) => ServerFrame::error(
                    HttpError::new(StatusCode::BAD_REQUEST, "malformed_frame", "Send JSON text frames, not binary."),
                    None,
                ),
                Some(Ok(_)) => continue, // ping/pong are answered by the library
                Some(Err(_)) | None => {
                    Box::pin(finish(answering, None)).await;
                    return;
                }
            },
        };
        if send(&mut sink, &outgoing).await.is_err() {
            Box::pin(finish(answering, None)).await;
            return;
        }
    }
}

/// The answer of a frame being worked on.
type Answering<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Option<ServerFrame>> + Send + 'a>>;

/// Frames read and not yet answered, at most this many per socket: past it the socket reads no
/// more until one is answered (the customer's client waits on its own socket buffer).
const FRAMES_IN_FLIGHT: usize = 16;

/// The frames being worked on, answered in the order they were read. Made when a frame comes
/// and dropped when the last is answered: an idle socket holds nothing here.
#[derive(Default)]
struct InFlight<'a>(Option<futures::stream::FuturesOrdered<Answering<'a>>>);

impl<'a> InFlight<'a> {
    fn push(&mut self, answering: Answering<'a>) {
        self.0.get_or_insert_with(Default::default).push_back(answering);
    }

    fn has_room(&self) -> bool {
        self.0.as_ref().is_none_or(|frames| frames.len() < FRAMES_IN_FLIGHT)
    }

    /// The next frame's answer, if it needs one; never, while no frame is being worked on.
    async fn next(&mut self) -> Option<ServerFrame> {
        let Some(frames) = self.0.as_mut() else { return std::future::pending().await };
        let answered = frames.next().await;
        if frames.is_empty() {
            self.0 = None;
        }
        answered.flatten()
    }
}

/// Lets the frames being answered finish before the socket ends (a message stored but cut off
/// before its answer was set going would wait for a restart), sending their answers to `sink`
/// when it is still open. Boxed where called, so an idle socket's task does not hold its state.
async fn finish(answering: InFlight<'_>, mut sink: Option<&mut futures::stream::SplitSink<WebSocket, WsMessage>>) {
    let Some(mut frames) = answering.0 else { return };
    while let Some(answered) = frames.next().await {
        if let (Some(frame), Some(open)) = (answered, sink.as_mut()) {
            if send(open, &frame).await.is_err() {
                sink = None;
            }
        }
    }
}

/// What the `ready` frame holds: the visitor's current conversation, if any, in one read (two
/// with an agent's read marker). The widget loads its messages over HTTP (`history`).
async fn current_conversation(state: &WebChatState, visitor: &str) -> Result<Option<ConversationView>, HttpError> {
    let store = state.engine.conversations();
    let Some((_, Some(current))) = store.contact_and_current_conversation(switchboard_models::Channel::WebChat, visitor).await? else {
        return Ok(None);
    };
    Ok(Some(ConversationView { seen_up_to: store.seen_by_agent(current.id).await?, ..ConversationView::from(&current) }))
}

/// The seq of the visitor's newest message in their current conversation (0: none yet).
async fn newest_seq(state: &WebChatState, visitor: &str) -> Result<i64, HttpError> {
    let store = state.engine.conversations();
    let Some((_, Some(conversation))) = store.contact_and_current_conversation(switchboard_models::Channel::WebChat, visitor).await? else {
        return Ok(0);
    };
    Ok(store.latest_conversation_messages(conversation.id, None, 1).await?.first().map_or(0, |m| m.seq))
}

/// The reply to one frame from the widget, if it needs one.
/// `arrival`: a send's place in the visitor's line, taken when the frame was read.
async fn answer(
    state: &WebChatState,
    visitor: &str,
    address: std::net::IpAddr,
    frame: Result<ClientFrame, serde_json::Error>,
    arrival: Option<switchboard_core::ArrivalTicket>,
) -> Option<ServerFrame> {
    let frame = match frame {
        Ok(frame) => frame,
        Err(error) => {
            return Some(ServerFrame::error(
                HttpError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_frame",
                    format!(
                        "Could not read the frame ({error}). Send {{\"type\":\"send\",\"client_id\":\"…\",\"text\":\"…\"}}, \
                         {{\"type\":\"history\",\"after\":0}}, {{\"type\":\"seen\",\"seq\":12}} or {{\"type\":\"ping\"}}."
                    ),
                ),
                None,
            ));
        }
    };
    Some(match frame {
        ClientFrame::Ping => ServerFrame::Pong,
        ClientFrame::History { after } => match page(state, visitor, after).await {
            Ok(page) => ServerFrame::History { messages: page.messages, conversation: page.conversation },
            Err(error) => ServerFrame::error(error, None),
        },
        ClientFrame::Send { client_id, text, language } => match receive(state, None, arrival, visitor, address, &client_id, text, language, Vec::new()).await {
            Ok(outcome) => ServerFrame::Ack {
                client_id,
                message: MessageView::from(&outcome.message),
                duplicate: outcome.duplicate,
                conversation: ConversationView::from(&outcome.conversation),
            },
            Err(error) => ServerFrame::error(error, Some(client_id)),
        },
        // Nothing to say back unless it failed.
        ClientFrame::Seen { seq } => return seen(state, visitor, seq).await.err().map(|error| ServerFrame::error(error, None)),
        ClientFrame::Typing => return typing(state, visitor).await.err().map(|error| ServerFrame::error(error, None)),
    })
}

/// The customer is typing: agents with the conversation open see a cue.
async fn typing(state: &WebChatState, visitor: &str) -> Result<(), HttpError> {
    let found = state.engine.conversations().contact_and_current_conversation(switchboard_models::Channel::WebChat, visitor).await?;
    if let Some((_, Some(conversation))) = found {
        state.engine.customer_typing(conversation.id);
    }
    Ok(())
}

pub(super) async fn seen(state: &WebChatState, visitor: &str, seq: i64) -> Result<(), HttpError> {
    if let Some(contact) = state.engine.conversations().contact_by_external_id(switchboard_models::Channel::WebChat, visitor).await? {
        state.engine.mark_seen(contact.id, seq).await?;
    }
    Ok(())
}

async fn send<S>(sink: &mut S, frame: &ServerFrame) -> Result<(), axum::Error>
where
    S: futures::Sink<WsMessage, Error = axum::Error> + Unpin,
{
    let text = serde_json::to_string(frame).expect("frames serialise");
    sink.send(WsMessage::Text(text.into())).await
}
