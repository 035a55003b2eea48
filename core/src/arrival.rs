//! Each sender's messages stored in the order they arrived, while the work before storing
//! (classification) runs for several of them at once. A message takes its place in line when it
//! arrives (`ArrivalOrder::ticket`, no waiting) and waits for its turn only to be stored
//! (`ArrivalTicket::turn`): a later message the classifier decides sooner does not overtake an
//! earlier one still with the sentence encoder, yet one customer's quick messages are classified
//! side by side instead of each waiting for the one before to be classified and committed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use switchboard_models::Channel;
use tokio::sync::oneshot;

type Sender = (Channel, String);

/// The last place in line of each sender with a message in receipt: its number and the signal
/// that it is done. An entry is removed by its own ticket when nobody lined up after it.
#[derive(Default, Clone)]
pub struct ArrivalOrder(Arc<Mutex<Lines>>);

#[derive(Default)]
struct Lines {
    next_place: u64,
    last: HashMap<Sender, (u64, oneshot::Receiver<()>)>,
}

impl ArrivalOrder {
    /// A place in `sender`'s line behind every ticket taken before this one and still held.
    pub fn ticket(&self, channel: Channel, sender: &str) -> ArrivalTicket {
        let (done, done_signal) = oneshot::channel();
        let key = (channel, sender.to_string());
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        lines.next_place += 1;
        let place = lines.next_place;
        let before = lines.last.insert(key.clone(), (place, done_signal)).map(|(_, signal)| signal);
        ArrivalTicket { order: self.clone(), key, place, before, done: Some(done) }
    }

    /// Removes the sender's line when `place` is its last: nobody is behind it.
    fn leave(&self, key: &Sender, place: u64) {
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if lines.last.get(key).is_some_and(|(last, _)| *last == place) {
            lines.last.remove(key);
        }
    }

    /// Senders with a message in receipt.
    #[cfg(test)]
    fn senders_in_line(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).last.len()
    }
}

/// One message's place in its sender's line. Its turn comes when every earlier place is done;
/// dropping it ends its turn. Dropped before its turn (its message refused or given up), the
/// place stays in line, holding later ones back, until the earlier ones are done (on a task of
/// its own; outside a Tokio runtime, at shutdown, it leaves at once).
pub struct ArrivalTicket {
    order: ArrivalOrder,
    key: Sender,
    place: u64,
    /// The place just before this one, until its turn has come.
    before: Option<oneshot::Receiver<()>>,
    done: Option<oneshot::Sender<()>>,
}

impl ArrivalTicket {
    /// Waits until every earlier place in the sender's line is done.
    pub async fn turn(&mut self) {
        if let Some(before) = self.before.as_mut() {
            // Sent or dropped, either way the place before is done.
            let _ = before.await;
        }
        self.before = None;
    }

    pub fn sender(&self) -> (Channel, &str) {
        (self.key.0, &self.key.1)
    }
}

impl Drop for ArrivalTicket {
    fn drop(&mut self) {
        let done = self.done.take();
        let waiting = self
            .before
            .take()
            .and_then(|mut before| matches!(before.try_recv(), Err(oneshot::error::TryRecvError::Empty)).then_some(before));
        match (waiting, tokio::runtime::Handle::try_current()) {
            // Given up before its turn: its place stays in line (a message arriving next still
            // queues behind it) until the earlier places are done.
            (Some(before), Ok(runtime)) => {
                let (order, key, place) = (self.order.clone(), self.key.clone(), self.place);
                runtime.spawn(async move {
                    let _ = before.await;
                    order.leave(&key, place);
                    drop(done);
                });
            }
            // Its turn came (or, outside a runtime while shutting down, nothing can wait).
            _ => {
                self.order.leave(&self.key, self.place);
                drop(done);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Whether `ticket`'s turn comes: at once (the bound is generous), or not while the places
    /// before it are held (a turn given too early would come within the short wait).
    async fn has_turn(ticket: &mut ArrivalTicket) -> bool {
        tokio::time::timeout(Duration::from_secs(5), ticket.turn()).await.is_ok()
    }

    async fn waits(ticket: &mut ArrivalTicket) -> bool {
        tokio::time::timeout(Duration::from_millis(20), ticket.turn()).await.is_err()
    }

    #[tokio::test]
    async fn a_later_place_waits_for_every_earlier_one_of_its_sender_only() {
        let order = ArrivalOrder::default();
        let mut first = order.ticket(Channel::WebChat, "ada");
        let mut second = order.ticket(Channel::WebChat, "ada");
        let mut third = order.ticket(Channel::WebChat, "ada");
        let mut other_sender = order.ticket(Channel::WebChat, "grace");
        let mut other_channel = order.ticket(Channel::Telegram, "ada");
        assert!(has_turn(&mut other_sender).await, "another sender has a line of their own");
        assert!(has_turn(&mut other_channel).await, "the same id on another channel is another sender");
        assert!(waits(&mut third).await, "the third waits for the first two");
        assert!(waits(&mut second).await, "the second waits for the first");
        assert!(has_turn(&mut first).await);
        drop(first);
        assert!(has_turn(&mut second).await);
        assert!(waits(&mut third).await, "the third still waits for the second");
        drop(second);
        assert!(has_turn(&mut third).await);
    }

    #[tokio::test]
    async fn a_place_given_up_before_its_turn_lets_nobody_overtake_the_places_before_it() {
        let order = ArrivalOrder::default();
        let first = order.ticket(Channel::WebChat, "ada");
        let second = order.ticket(Channel::WebChat, "ada");
        let mut third = order.ticket(Channel::WebChat, "ada");
        drop(second);
        assert!(waits(&mut third).await, "the given-up second still holds the third behind the first");
        drop(first);
        assert!(has_turn(&mut third).await);
    }

    /// The newest place given up early (its message refused) still holds a message arriving
    /// after it behind the earlier places.
    #[tokio::test]
    async fn a_message_arriving_after_the_newest_place_was_given_up_still_waits_for_the_earlier_ones() {
        let order = ArrivalOrder::default();
        let first = order.ticket(Channel::WebChat, "ada");
        let second = order.ticket(Channel::WebChat, "ada");
        drop(second);
        let mut third = order.ticket(Channel::WebChat, "ada");
        assert!(waits(&mut third).await, "taken after the second was given up, behind the first still");
        drop(first);
        assert!(has_turn(&mut third).await);
    }

    /// Places given up early leave once the places before them are done, on a task of their own.
    async fn senders_in_line_once_settled(order: &ArrivalOrder, expected: usize) -> usize {
        for _ in 0..100 {
            if order.senders_in_line() == expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        order.senders_in_line()
    }

    #[tokio::test]
    async fn a_sender_leaves_the_lines_when_their_last_place_is_done() {
        let order = ArrivalOrder::default();
        let mut tickets: Vec<_> = (0..5).map(|_| order.ticket(Channel::WebChat, "ada")).collect();
        let other = order.ticket(Channel::Email, "grace@example.com");
        assert_eq!(order.senders_in_line(), 2);
        // Given up in any order, turns taken or not.
        assert!(has_turn(&mut tickets[0]).await);
        tickets.swap(1, 3);
        for ticket in tickets.drain(..).rev() {
            drop(ticket);
        }
        assert_eq!(senders_in_line_once_settled(&order, 1).await, 1, "only grace is left in line");
        drop(other);
        assert_eq!(senders_in_line_once_settled(&order, 0).await, 0);
        let mut again = order.ticket(Channel::WebChat, "ada");
        assert!(has_turn(&mut again).await, "a new line starts at once");
    }
}
