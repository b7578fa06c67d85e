package core

// userKey is the reserved attribute holding the user a session is bound
// to (Session.SetUser): it replicates like any attribute.
const userKey = "\x00user"
