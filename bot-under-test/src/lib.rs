//! The reference proactive bot.
