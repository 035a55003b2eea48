//! The engine's side of one customer across channels (`crate::identity`): codes issued and
//! redeemed from customer messages, and joins agents make or undo by hand.

use super::{Engine, EngineError};
use crate::identity::{CODE_LIFETIME_MINUTES, LinkRequest, channel_words, code_hash, new_code};
use crate::ports::{CustomerMailWrite, JoinContacts};
use switchboard_models::{AgentId, AuditAction, AuditEntry, Channel, Contact, ContactId, ContactLink, ConversationId, LinkCode, LinkId, LinkProof, Timestamp};

/// What the bot answers a linking message, with the code to mail when one was asked for.
#[derive(Debug, Clone)]
pub(super) struct LinkAnswer {
    pub text: String,
    pub mail: Option<CustomerMailWrite>,
}

impl Engine {
    /// The bot's answer to a message that asks for linking (`/link`, or an issued code), after
    /// doing what it asks; `None` for every other message.
    pub(super) async fn link_answer(&self, contact_id: ContactId, conversation: ConversationId, text: &str) -> Result<Option<LinkAnswer>, EngineError> {
        let Some(request) = crate::identity::link_request(text) else { return Ok(None) };
        let contact = self.store.contact(contact_id).await?.ok_or(EngineError::NotFound("contact"))?;
        let now = self.clock.now();
        let said = |text: String| Ok(Some(LinkAnswer { text, mail: None }));
        match request {
            LinkRequest::ShowCode => {
                let code = self.issue_code(contact.id, None, now).await?;
                said(format!(
                    "Your link code is {code}. Send it to us from your other channel (email, Telegram, Discord or the web chat) \
                     within {CODE_LIFETIME_MINUTES} minutes, and our team will see both conversations as yours."
                ))
            }
            LinkRequest::MailCode(address) => {
                if crate::step::email_address_in(&address).as_deref() != Some(address.as_str()) || address.len() > 254 {
                    return said(format!("`{address}` is not an email address. Send /link followed by your address, like /link ann@example.com."));
                }
                if contact.channel == Channel::Email && contact.external_id == address {
                    return said("You are writing from that address already.".into());
                }
                let code = self.issue_code(contact.id, Some(address.clone()), now).await?;
                let mail = CustomerMailWrite {
                    conversation,
                    address: address.clone(),
                    text: format!(
                        "Your code to confirm this address is {code}. Type it in the chat where you asked for it within \
                         {CODE_LIFETIME_MINUTES} minutes. If you did not ask for it, ignore this mail."
                    ),
                    at: now,
                };
                Ok(Some(LinkAnswer {
                    text: format!("I sent a code to {address}. Type it here within {CODE_LIFETIME_MINUTES} minutes to confirm the address is yours."),
                    mail: Some(mail),
                }))
            }
            LinkRequest::Code(code) => {
                let hash = code_hash(&code);
                let Some(issued) = self.store.link_code(&hash).await? else { return Ok(None) };
                self.redeem(&contact, conversation, issued, now).await.map(Some)
            }
        }
    }

    async fn issue_code(&self, contact: ContactId, email: Option<String>, now: Timestamp) -> Result<String, EngineError> {
        let code = new_code();
        let record = LinkCode {
            code_hash: code_hash(&code),
            contact,
            email,
            created_at: now,
            expires_at: now + chrono::Duration::minutes(CODE_LIFETIME_MINUTES),
            used_at: None,
        };
        self.store.save_link_code(&record).await?;
        Ok(code)
    }

    async fn redeem(&self, contact: &Contact, conversation: ConversationId, issued: LinkCode, now: Timestamp) -> Result<LinkAnswer, EngineError> {
        let said = |text: &str| LinkAnswer { text: text.to_string(), mail: None };
        // A code mailed to an address is typed back where it was asked for; a shown one is
        // sent from the other channel.
        let (person, joined, proof) = match &issued.email {
            Some(_) if issued.contact != contact.id => return Ok(said("That code confirms an address for another chat; type it there.")),
            Some(address) => (contact.id, self.identify_contact(Channel::Email, address, None, None).await?.id, LinkProof::EmailCode),
            None if issued.contact == contact.id => {
                return Ok(said("Send this code from your other channel, not this one: that shows both are you."));
            }
            None => (issued.contact, contact.id, LinkProof::LinkCode),
        };
        if issued.used_at.is_some() || issued.expires_at <= now {
            // Used by this very join (an answer repeated after a restart): say it is done.
            if self.one_person(person, joined).await? {
                return Ok(said("These are joined already."));
            }
            return Ok(said("That code was used already or has expired. Send /link for a new one."));
        }
        let other = self.store.contact(if joined == contact.id { person } else { joined }).await?.ok_or(EngineError::NotFound("contact"))?;
        let audit = AuditEntry {
            at: now,
            actor: None,
            action: AuditAction::JoinContacts,
            conversation: Some(conversation),
            subject_agent: None,
            before: Some(contact.label()),
            after: Some(format!("{} ({})", other.label(), proof.as_str().replace('_', " "))),
        };
        let join = JoinContacts { person, joined, proof, agent: None, at: now, code_hash: Some(issued.code_hash), audit: Some(audit) };
        let _one_at_a_time = self.store.exclusive("contact-links").await?;
        match self.store.join_contacts(&join).await? {
            Some(_) => Ok(said(&format!(
                "Thank you: this chat and {} are now joined, so our team sees your whole history.",
                channel_words(other.channel)
            ))),
            None if self.one_person(person, joined).await? => Ok(said("These are joined already.")),
            None => Ok(said("That code was used already or has expired. Send /link for a new one.")),
        }
    }

    /// The embedding site signed its user, mail address included: that address is theirs, so
    /// the web-chat contact is joined with the address's email contact (made when the address
    /// never wrote), once.
    pub async fn join_site_users_address(&self, contact: &Contact) -> Result<Option<ContactLink>, EngineError> {
        let Some(address) = contact.email.as_deref() else { return Ok(None) };
        let by_mail = self.identify_contact(Channel::Email, address, contact.display_name.clone(), None).await?;
        if self.one_person(contact.id, by_mail.id).await? {
            return Ok(None);
        }
        let now = self.clock.now();
        let audit = AuditEntry {
            at: now,
            actor: None,
            action: AuditAction::JoinContacts,
            conversation: None,
            subject_agent: None,
            before: Some(by_mail.label()),
            after: Some(format!("{} (site identity)", contact.label())),
        };
        let join = JoinContacts { person: contact.id, joined: by_mail.id, proof: LinkProof::SiteIdentity, agent: None, at: now, code_hash: None, audit: Some(audit) };
        let _one_at_a_time = self.store.exclusive("contact-links").await?;
        Ok(self.store.join_contacts(&join).await?)
    }

    async fn one_person(&self, a: ContactId, b: ContactId) -> Result<bool, EngineError> {
        Ok(self.store.identities(a).await?.iter().any(|c| c.id == b))
    }

    /// An agent joins customer `joined` (and whoever is joined with them) to `person`'s
    /// customer, with an audit entry.
    pub async fn join_customers(&self, person: ContactId, joined: ContactId, by: AgentId) -> Result<ContactLink, EngineError> {
        let agent = self.store.agent(by).await?.filter(|a| a.active).ok_or(EngineError::NotFound("agent"))?;
        let (Some(kept), Some(other)) = (self.store.contact(person).await?, self.store.contact(joined).await?) else {
            return Err(EngineError::NotFound("customer"));
        };
        if self.one_person(person, joined).await? {
            return Err(EngineError::Invalid(format!("{} and {} are one customer already", kept.label(), other.label())));
        }
        let now = self.clock.now();
        let audit = AuditEntry {
            at: now,
            actor: Some(agent.id),
            action: AuditAction::JoinContacts,
            conversation: None,
            subject_agent: None,
            before: Some(other.label()),
            after: Some(format!("{} (agent)", kept.label())),
        };
        let join = JoinContacts { person, joined, proof: LinkProof::Agent, agent: Some(agent.id), at: now, code_hash: None, audit: Some(audit) };
        let _one_at_a_time = self.store.exclusive("contact-links").await?;
        self.store
            .join_contacts(&join)
            .await?
            .ok_or_else(|| EngineError::Conflict(format!("{} and {} were joined meanwhile", kept.label(), other.label())))
    }

    /// Undoes a join (any proof): what it moved is separated again, with an audit entry.
    pub async fn separate_customers(&self, link: LinkId, by: AgentId) -> Result<ContactLink, EngineError> {
        let agent = self.store.agent(by).await?.filter(|a| a.active).ok_or(EngineError::NotFound("agent"))?;
        let known = self.store.contact_link(link).await?.ok_or(EngineError::NotFound("join"))?;
        if known.undone_at.is_some() {
            return Err(EngineError::Conflict("this join was undone already".into()));
        }
        let (person, joined) = (self.store.contact(known.person).await?, self.store.contact(known.joined).await?);
        let label = |c: Option<Contact>| c.map(|c| c.label()).unwrap_or_default();
        let now = self.clock.now();
        let audit = AuditEntry {
            at: now,
            actor: Some(agent.id),
            action: AuditAction::SeparateContacts,
            conversation: None,
            subject_agent: None,
            before: Some(label(joined)),
            after: Some(label(person)),
        };
        let _one_at_a_time = self.store.exclusive("contact-links").await?;
        self.store
            .undo_contact_link(link, Some(agent.id), now, Some(audit))
            .await?
            .ok_or_else(|| EngineError::Conflict("this join was undone already".into()))
    }
}
