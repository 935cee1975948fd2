"""Mail the PBX sends: the one durable outgoing queue (`queue`, with `enqueue_mail` for every
feature) and the messages it carries (`welcome`); the sender that empties the queue is a
service (`wildix_ast.services.mail`). May import the model and the store."""
