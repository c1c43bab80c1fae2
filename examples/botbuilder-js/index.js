// A proactive Teams bot built on the unmodified botbuilder SDK (CloudAdapter), following the
// "send proactive messages" pattern from the Bot Framework docs. It runs against teams-emulator
// (or real Teams) by configuration alone: see README.md for the environment it reads.
//
//   POST /api/messages  Teams activities -> CloudAdapter
//   GET  /api/notify    proactive message to every conversation seen so far (?text= overrides)
//
// Only the readiness line goes to stdout; everything else is logged to stderr.

'use strict';

const http = require('node:http');
const {
    ActivityHandler,
    CloudAdapter,
    ConfigurationBotFrameworkAuthentication,
    TurnContext,
} = require('botbuilder');

const DEFAULT_NOTIFY_TEXT = 'Proactive hello from botbuilder-js';

// continueConversationAsync() treats a non-string first argument as a ClaimsIdentity, so an unset
// MicrosoftAppId must become '' here, not stay undefined. With '' the SDK disables auth: inbound
// activities are not validated and outbound Connector calls carry no Authorization header.
const appId = process.env.MicrosoftAppId ?? '';

// Every key of ConfigurationBotFrameworkAuthentication (MicrosoftAppId, MicrosoftAppPassword,
// ToBotFromChannelOpenIdMetadataUrl, ...) comes straight from the environment.
const adapter = new CloudAdapter(new ConfigurationBotFrameworkAuthentication(process.env));

adapter.onTurnError = async (context, error) => {
    console.error(`[onTurnError] ${context.activity.type}: ${error.stack ?? error}`);
};

// Conversation references in memory, keyed by conversation id: a restart forgets them, which is
// what the docs sample does too. A real bot would persist them.
const conversationReferences = new Map();

function rememberConversation(activity) {
    const reference = TurnContext.getConversationReference(activity);
    conversationReferences.set(reference.conversation.id, reference);
    console.error(`stored conversation reference ${reference.conversation.id}`);
}

class ProactiveBot extends ActivityHandler {
    constructor() {
        super();

        this.onConversationUpdate(async (context, next) => {
            rememberConversation(context.activity);
            await next();
        });

        this.onInstallationUpdate(async (context, next) => {
            // An uninstall leaves nobody to talk to: sending would only earn a 403. An upgrade's
            // "remove-upgrade" is followed by "add-upgrade", so only a plain "remove" forgets.
            if (context.activity.action === 'remove') {
                conversationReferences.delete(context.activity.conversation.id);
                console.error(`forgot conversation reference ${context.activity.conversation.id}`);
            } else {
                rememberConversation(context.activity);
            }
            await next();
        });

        this.onMessage(async (context, next) => {
            await context.sendActivity(`You said: ${context.activity.text ?? ''}`);
            await next();
        });
    }
}

const bot = new ProactiveBot();

async function sendProactive(reference, text) {
    // A failure inside the turn goes to onTurnError, which logs and swallows it, so
    // continueConversationAsync() would resolve as if the message had been sent. Catch it here.
    let failure = null;
    await adapter.continueConversationAsync(appId, reference, async (context) => {
        try {
            await context.sendActivity(text);
        } catch (err) {
            failure = err;
        }
    });
    if (failure) throw failure;
}

async function notifyAll(text) {
    let sent = 0;
    const errors = [];
    for (const reference of conversationReferences.values()) {
        try {
            await sendProactive(reference, text);
            sent += 1;
        } catch (err) {
            errors.push({
                conversationId: reference.conversation.id,
                status: err.statusCode ?? null,
                message: err.message,
            });
            console.error(`proactive send to ${reference.conversation.id} failed: ${err.message}`);
        }
    }
    return { sent, failed: errors.length, errors };
}

// CloudAdapter.process() wants an Express/Restify-like request (parsed `body`) and response
// (`status`, `header`, `send`, `end`); these two shims give it that on top of node:http, which
// keeps the example free of a web framework.
function readJsonBody(req) {
    return new Promise((resolve, reject) => {
        const chunks = [];
        req.on('data', (chunk) => chunks.push(chunk));
        req.on('error', reject);
        req.on('end', () => {
            try {
                resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
            } catch (err) {
                reject(err);
            }
        });
    });
}

function frameworkResponse(res) {
    return {
        socket: res.socket,
        status(code) {
            res.statusCode = code;
            return this;
        },
        header(name, value) {
            res.setHeader(name, value);
            return this;
        },
        send(body) {
            if (typeof body === 'string' || Buffer.isBuffer(body)) {
                res.write(body);
            } else {
                res.setHeader('Content-Type', 'application/json; charset=utf-8');
                res.write(JSON.stringify(body));
            }
            return this;
        },
        end() {
            if (!res.writableEnded) res.end();
        },
    };
}

function sendJson(res, status, value) {
    res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8' });
    res.end(JSON.stringify(value));
}

async function handleMessages(req, res) {
    try {
        req.body = await readJsonBody(req);
    } catch (err) {
        return sendJson(res, 400, { error: `request body is not JSON: ${err.message}` });
    }
    await adapter.process(req, frameworkResponse(res), (context) => bot.run(context));
}

async function handleNotify(url, res) {
    const text = url.searchParams.get('text') || DEFAULT_NOTIFY_TEXT;
    const summary = await notifyAll(text);
    sendJson(res, 200, { text, conversations: conversationReferences.size, ...summary });
}

const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    let handled;
    if (url.pathname === '/api/messages' && req.method === 'POST') {
        handled = handleMessages(req, res);
    } else if (url.pathname === '/api/notify' && req.method === 'GET') {
        handled = handleNotify(url, res);
    } else {
        return sendJson(res, 404, { error: `no route for ${req.method} ${url.pathname}` });
    }
    handled.catch((err) => {
        console.error(`${req.method} ${url.pathname} failed: ${err.stack ?? err}`);
        if (!res.headersSent) sendJson(res, 500, { error: err.message });
        else res.end();
    });
});

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 3978);

server.listen(port, host, () => {
    // A test runner waits for this exact line; with PORT=0 it also learns the port picked.
    console.log(`botbuilder-js listening on http://${host}:${server.address().port}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => server.close(() => process.exit(0)));
}
