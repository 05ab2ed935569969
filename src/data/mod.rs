//! Labelled sentence data sets (UCI Sentiment Labelled Sentences, user files) and the sentiment head.
