"""Every channel variable (and dialplan global) of wildix-ast, named once.

The dialplan (`wildix_ast/asterisk/*_contexts.py`, `outgoing.py`), the PJSIP endpoints
(`asterisk/pjsip.py`), the FastAGI service (`services/agi/`) and the AMI service
(`services/ami/`) meet on these names: a name written anywhere else is a test failure
(`tests/unit/test_variables.py`), so renaming one here renames it everywhere, and a reader
finds here who sets a variable and who reads it.

Shape (keep it when adding a feature's variables, e.g. CDR or mail): one group per
producer, each name a constant with a `#:` line saying who sets it and who reads it, and,
where a FastAGI route answers several at once, a tuple of the route's answer. Values are the
variable names only; what a variable may hold is said where it is set.

`WILDIX_AST_*` are environment variables of the programs, not channel variables: they are
not named here (`conf.py` and the CLI read them).
"""

from __future__ import annotations

PREFIX = "WILDIX_"
"""Every channel variable of wildix-ast starts with this."""

# --- dialplan globals (extensions.conf [globals]) ----------------------------------------------

#: set by extensions.conf's [globals] (`agi://<system.fastagi>`); read by every AGI() step
AGI_URL = "WILDIX_AGI"
#: set by extensions.conf's [globals] (the path of wildix-fastagi.conf); read by the dialplan's
#: FILE() when it signs a FastAGI request
AGI_KEY_FILE = "WILDIX_AGI_KEY"
#: set and read by a round-robin call group (`wildix-cg-<name>`), a global per group:
#: `ROUND_ROBIN_PREFIX + <group name>` holds where the next call starts
ROUND_ROBIN_PREFIX = "WILDIX_RR_"

# --- the FastAGI protocol (services/agi/server.py) ---------------------------------------------

#: cleared by the dialplan before each AGI(); set last by the FastAGI server, OK or FAILED;
#: read by the dialplan (only OK is acted on)
AGI_STATUS = "WILDIX_AGI_STATUS"
#: set by the FastAGI server with FAILED (the reason); read by people (logs, `dialplan` traces)
AGI_ERROR = "WILDIX_AGI_ERROR"
#: the health route's counters: set by the FastAGI server (`Stats.as_variables`); read by
#: `wildix-ast agi check` and the AMI service's overview
AGI_HEALTH_PREFIX = "WILDIX_AGI_"
AGI_UPTIME = "WILDIX_AGI_UPTIME"
AGI_CONNECTIONS = "WILDIX_AGI_CONNECTIONS"
AGI_ACTIVE = "WILDIX_AGI_ACTIVE"
AGI_ANSWERED = "WILDIX_AGI_ANSWERED"
AGI_FAILED = "WILDIX_AGI_FAILED"
AGI_BAD_HANDSHAKES = "WILDIX_AGI_BAD_HANDSHAKES"
AGI_REFUSED = "WILDIX_AGI_REFUSED"
AGI_P99_MS = "WILDIX_AGI_P99_MS"

# --- who is calling (PJSIP endpoints, trunks' entry, test calls) -------------------------------

#: set by each phone's endpoint (`set_var`, pjsip.py: a SIP client cannot set it), the test
#: call (services/ami/originate.py), a forward, a mobility leg and a blind transfer; read by
#: outgoing routing and procedures' trunk dials (the caller's ACL group)
GROUP = "WILDIX_GROUP"
#: set like GROUP (the user's office DID); read by a trunk's caller ID
DID = "WILDIX_DID"
#: set (inherited, `__`) by a trunk's entry context to `external` (calls.call_user.EXTERNAL),
#: empty for internal calls; read by the FastAGI call-user, mobility and missed-call routes
#: (their argument) and by emergency numbers (a trunk's caller is refused)
CALL_TYPE = "WILDIX_CALLTYPE"
#: set by `wildix-test-call` from its AstDB request (services/ami/originate.py writes it);
#: read by the same context
TEST_CALL = "WILDIX_TC"

# --- the call-user route (calls/call_user.py decides, asterisk/call_user_contexts.py acts) -----

#: ring, reject, busy, forward or direct (calls.call_user.Action)
ACTION = "WILDIX_ACTION"
#: forward always: the destination (a number or VOICEMAIL)
FORWARD = "WILDIX_FORWARD"
#: forward on busy: the destination
FORWARD_BUSY = "WILDIX_FWD_BUSY"
#: forward on no answer or unreachable: the destination
FORWARD_UNAVAILABLE = "WILDIX_FWD_UNAVAIL"
#: the ring time (seconds; empty: the site's RING_TIMEOUT)
TIMEOUT = "WILDIX_TIMEOUT"
#: 1: a second call rings a user who is in a call
CALL_WAITING = "WILDIX_WAITING"
#: the ringtone, sent as Alert-Info
RINGTONE = "WILDIX_RINGTONE"
#: the forwarding user's ACL group, procedure and office DID: a forward leaves with them
FORWARD_GROUP = "WILDIX_FWD_GROUP"
FORWARD_PROCEDURE = "WILDIX_FWD_PROC"
FORWARD_DID = "WILDIX_FWD_DID"
#: 1: the mobile leg rings beside the phone (asterisk/service_contexts.py's wildix-mobility)
MOBILITY = "WILDIX_MOBILITY"
#: 1: a missed call queues the missed-call mail (a hang-up handler)
MISSED_MAIL = "WILDIX_MISSED_MAIL"
#: the popup URL expanded for this call (also the popup route's answer)
POPUP_URL = "WILDIX_POPUP_URL"
#: 1: beep into the user's current call when a second one rings
CALL_WAITING_BEEP = "WILDIX_CW_BEEP"
#: the call-user route's answer: always all of them (a channel that calls two users in turn
#: never acts on the first one's answer)
CALL_USER_DECISION = (ACTION, FORWARD, FORWARD_BUSY, FORWARD_UNAVAILABLE, TIMEOUT, CALL_WAITING,
                      RINGTONE, FORWARD_GROUP, FORWARD_PROCEDURE, FORWARD_DID, MOBILITY,
                      MISSED_MAIL, POPUP_URL, CALL_WAITING_BEEP)
#: set (inherited, `__`) by the call-user subroutine before a forward: forwards this call has
#: followed; read by the same subroutine (calls.call_user.MAX_FORWARDS stops a loop)
FORWARDS = "WILDIX_FORWARDS"
#: set by the call-user subroutine: the user's own Dial's DIALSTATUS; read by the
#: missed-call hang-up handler
USER_DIAL_STATUS = "WILDIX_USER_DIALSTATUS"

# --- the mobility route (calls/mobility.py decides, service_contexts.py's wildix-mobility acts) --

#: the mobile number (empty: no leg)
MOBILE = "WILDIX_MOBILE"
#: seconds the leg waits before the mobile rings
MOBILITY_DELAY = "WILDIX_MOBILITY_DELAY"
#: 1: the mobile's answer is confirmed with `*`
MOBILITY_CONFIRM = "WILDIX_MOBILITY_CONFIRM"
#: the user's ACL group and office DID: the mobile is called with the user's rights
MOBILITY_GROUP = "WILDIX_MOBILITY_GROUP"
MOBILITY_DID = "WILDIX_MOBILITY_DID"
#: the mobility route's answer
MOBILITY_LEG = (MOBILE, MOBILITY_DELAY, MOBILITY_CONFIRM, MOBILITY_GROUP, MOBILITY_DID)
#: set (inherited, `_`) by wildix-mobility: the caller's number; read by the confirmation
MOBILITY_CALLER = "WILDIX_MOBILITY_CALLER"
#: set by wildix-mobility (the confirmation's `U()` option); read by a trunk's Dial
TRUNK_DIAL_OPTIONS = "WILDIX_TRUNK_DIAL_OPTIONS"
#: set by wildix-mobility-confirm: the key pressed
CONFIRM_KEY = "WILDIX_KEY"

# --- the feature-code route (services/agi/service_routes.py; wildix-feature-code plays it) ----

#: the prompts to play
FEATURE_CODE_PLAYBACK = "WILDIX_FC_PLAYBACK"
#: digits to say after them (empty: none)
FEATURE_CODE_DIGITS = "WILDIX_FC_DIGITS"
#: what happened, in one word (for traces and tests)
FEATURE_CODE_RESULT = "WILDIX_FC_RESULT"

# --- the missed-call route (services/agi/service_routes.py; wildix-missed-call asks it) -------

#: 1 queued, 0 not wanted or already queued for this call
MISSED_QUEUED = "WILDIX_MISSED_QUEUED"

# --- the hotline route (services/agi/service_routes.py; the hotline code asks it) -------------

#: the number called when the user dials nothing (empty: no hotline)
HOTLINE = "WILDIX_HOTLINE"
#: seconds of dial tone before it is called
HOTLINE_DELAY = "WILDIX_HOTLINE_DELAY"

# --- the voicemail-login and voicemail-failed routes (services/agi/voicemail_logins.py) -------

#: 1 while the mailbox is locked by wrong PINs; read by wildix-voicemail-pin
VOICEMAIL_LOCKED = "WILDIX_VM_LOCKED"
#: set and read by wildix-voicemail-pin only: wrong PINs this call, the prompt, the PIN typed
VOICEMAIL_TRIES = "WILDIX_VM_TRIES"
VOICEMAIL_PROMPT = "WILDIX_VM_PROMPT"
VOICEMAIL_PIN = "WILDIX_VM_PIN"

# --- the handset-login route (calls/handset_login.py decides, services/agi/handset_routes.py
# --- answers, service_contexts.py's wildix-handset-login acts) ---------------------------------

#: what dialling the login code did (calls.handset_login.Outcome): ask, logged_in, logged_out,
#: refused, locked or unknown
HANDSET_RESULT = "WILDIX_HS_RESULT"
#: the prompts to play for it (empty: none)
HANDSET_PLAYBACK = "WILDIX_HS_PLAYBACK"
#: set by wildix-handset-login (Read): the extension typed; read by the route (its argument)
HANDSET_EXTENSION = "WILDIX_HS_EXTEN"
#: set by wildix-handset-login (Read): the PIN typed; read by the route with GET VARIABLE (so
#: it is in no AGI() argument, hence in no verbose log line), then cleared by the dialplan
HANDSET_PIN = "WILDIX_HS_PIN"
#: set and read by wildix-handset-login: refused attempts this call, the next prompt
HANDSET_TRIES = "WILDIX_HS_TRIES"
HANDSET_PROMPT = "WILDIX_HS_PROMPT"
#: set and read by wildix-handset-login: the calling endpoint's contact URI (the NOTIFY's)
HANDSET_CONTACT = "WILDIX_HS_CONTACT"

# --- the dialplan's own working variables (set and read by the contexts named) ----------------

#: the number being admitted (asterisk/dialplan_builder.py's admission) and the hotline's digits
DIALLED = "WILDIX_DIALLED"
#: a procedure's called number (`correct called number` edits it); procedure_contexts.py
CALLED = "WILDIX_CALLED"
#: the call class a procedure set (`set call class`); read by its trunk dials
CALL_CLASS = "WILDIX_CLASS"
#: 1 for an emergency call; read by an anonymous trunk (it shows the caller then)
EMERGENCY = "WILDIX_EMERGENCY"
#: a trunk's Dial timeout (empty on a group's last trunk)
SETUP = "WILDIX_SETUP"
#: an incoming trunk call: the source address, the caller's number, the DID (normalised,
#: and as given); procedure_contexts.py's wildix-in-<trunk>
SOURCE = "WILDIX_SRC"
CALLER_NUMBER = "WILDIX_NUM"
INCOMING = "WILDIX_IN"
INCOMING_GIVEN = "WILDIX_IN_GIVEN"
#: a time frame's test: today's date in the PBX time zone
TODAY = "WILDIX_TODAY"
#: a call group: the Dial string (ring all); the deadline, the member, members left and
#: seconds left (hunt, random, round robin)
CALL_GROUP_DIAL = "WILDIX_CG"
CALL_GROUP_END = "WILDIX_CG_END"
CALL_GROUP_INDEX = "WILDIX_CG_I"
CALL_GROUP_LEFT_MEMBERS = "WILDIX_CG_N"
CALL_GROUP_LEFT_SECONDS = "WILDIX_CG_LEFT"
#: the call group an IVR's target just rang (not twice); an IVR's replays
IVR_CALL_GROUP = "WILDIX_IVR_CG"
IVR_TRIES = "WILDIX_IVR_TRIES"

# --- Fax2Mail (asterisk/fax_contexts.py; services/fax/inbound.py reads the job files) ----------

#: set by extensions.conf's [globals] (<astspooldir>/wildix-fax); read by the fax receive
#: subroutine (where ReceiveFax writes, where the job record goes)
FAX_SPOOL = "WILDIX_FAX_SPOOL"
#: set by the fax receive subroutine: the job's name (the UNIQUEID, digits and dots only),
#: the fax user's extension, the DID called, the caller's number (FILTERed), the start
#: (EPOCH); read by its hang-up handler, which writes the job record
FAX_JOB = "WILDIX_FAX_JOB"
FAX_USER = "WILDIX_FAX_USER"
FAX_DID = "WILDIX_FAX_DID"
FAX_FROM = "WILDIX_FAX_FROM"
FAX_START = "WILDIX_FAX_START"
#: set by the hang-up handler: the job record's path in tmp/ while it is written
FAX_RECORD = "WILDIX_FAX_RECORD"

# --- Mail2Fax (asterisk/fax_send_contexts.py; services/fax/outbound.py reads its records) ------

#: set by extensions.conf's [globals] (<astspooldir>/wildix-fax-out): where the fax sender
#: puts the TIFF to send (send/) and where the hang-up handlers drop their records
FAX_OUT_SPOOL = "WILDIX_FAX_OUT_SPOOL"
#: the call's one-time id (hex digits only), on both halves of the Local channel
FAX_OUT_JOB = "WILDIX_FAX_OUT_JOB"
#: the request taken from AstDB (group|DID|caller number|procedure|number)
FAX_OUT_REQUEST = "WILDIX_FAX_OUT_REQ"
#: the sender's extension (digits), a SHARED variable of the dialled half; the fax half reads
#: it for the
#: call history's marks (FAX_USER, FAX_JOB: the fax half's UNIQUEID)
FAX_OUT_USER = "WILDIX_FAX_OUT_USER"
FAX_OUT_START = "WILDIX_FAX_OUT_START"
#: the fax half's count of short waits for its dialled half to be bridged to the callee
FAX_OUT_WAITS = "WILDIX_FAX_OUT_WAITS"
#: the record's path in tmp/ while a hang-up handler writes it
FAX_OUT_RECORD = "WILDIX_FAX_OUT_RECORD"
