// Writes the Flowise fixtures with Flowise's own server code (flowise@3.1.4).
// Run by hand, never in CI: see tests/fixtures/flowise/README.md for the commands.
//
//   FLOWISE_DIR=/path/to/node_modules/flowise  (the installed npm package)
//   DATABASE_TYPE=sqlite   DATABASE_PATH=/some/empty/dir        -> a fresh database.sqlite
//   DATABASE_TYPE=postgres DATABASE_HOST/PORT/USER/PASSWORD/NAME -> an empty database
//
// What it uses from Flowise: dist/DataSource.js (the DataSource exactly as the server configures it from
// DATABASE_TYPE), its migrations (runMigrations({ transaction: 'each' }), as dist/index.js does at start),
// its entities ChatFlow, ChatMessage, Lead and its dist/utils/addChatMesage.js (utilAddChatMessage, the
// function buildChatflow/buildAgentflow call for every message). No LLM is called (no network): the turns
// are written directly, with the columns buildChatflow.js sets (role, content, chatflowid, chatType, chatId,
// memoryType, sessionId, createdDate, leadEmail on the visitor's row; usedTools/sourceDocuments on the bot's
// row when the chain returned them). Leads are saved as services/leads createLead saves them (only
// chatflowid, name, email, phone, chatId set; createdDate left to the database default). The deleted
// chatflow is deleted as services/chatflows deleteChatflow does (the chatflow row, then its messages).
'use strict'
const path = require('path')
const FLOWISE_DIR = process.env.FLOWISE_DIR
if (!FLOWISE_DIR) throw new Error('set FLOWISE_DIR to node_modules/flowise')
const dist = (p) => require(path.join(FLOWISE_DIR, 'dist', p))

const { init, getDataSource } = dist('DataSource')
const { ChatFlow } = dist('database/entities/ChatFlow')
const { ChatMessage } = dist('database/entities/ChatMessage')
const { Lead } = dist('database/entities/Lead')
const { utilAddChatMessage } = dist('utils/addChatMesage')
const { User } = dist('enterprise/database/entities/user.entity')
const { Organization } = dist('enterprise/database/entities/organization.entity')
const { Workspace } = dist('enterprise/database/entities/workspace.entity')

// Fixed ids so both dumps (and the tests) name the same things.
const USER = 'a1b2c3d4-0000-4000-8000-0000000000aa' // the owner who signed up (chat_flow.workspaceId needs a workspace)
const ORGANIZATION = 'a1b2c3d4-0000-4000-8000-0000000000bb'
const WORKSPACE = 'a1b2c3d4-0000-4000-8000-000000000001'
const LEAD_BOT = '7f0c2e1a-5b7d-4c1e-9a3f-2d6b8e4f1a01'
const SUPPORT_BOT = '7f0c2e1a-5b7d-4c1e-9a3f-2d6b8e4f1a02'
const OLD_BOT = '7f0c2e1a-5b7d-4c1e-9a3f-2d6b8e4f1a03'
const CHAT = {
    leadDay1: 'c0a80001-1111-4a11-8a11-000000000001', // Lead Bot, lead form filled, asks prices, leaves
    leadDay2: 'c0a80001-2222-4a22-8a22-000000000002', // Lead Bot, the same visitor the next day after "clear chat"
    supportTool: 'c0a80001-3333-4a33-8a33-000000000003', // Support Bot, an answer that called a tool (usedTools)
    internal: 'c0a80001-4444-4a44-8a44-000000000004', // Support Bot, the builder's own test chat (INTERNAL)
    orphan: 'c0a80001-5555-4a55-8a55-000000000005', // Old Bot, deleted: its lead stays, its messages are gone
    inFlight: 'c0a80001-6666-4a66-8a66-000000000006' // Old Bot: a turn that was running during the delete, written after it
}

const flowData = (nodeLabel) =>
    JSON.stringify({
        nodes: [{ id: 'conversationChain_0', data: { label: nodeLabel, name: 'conversationChain', inputs: {} } }],
        edges: []
    })

async function saveChatflow(ds, id, name, chatbotConfig) {
    // services/chatflows saveChatflow: repository create + save (createdDate/updatedDate by TypeORM)
    const repo = ds.getRepository(ChatFlow)
    const cf = new ChatFlow()
    Object.assign(cf, {
        id,
        name,
        flowData: flowData('Conversation Chain'),
        deployed: false,
        isPublic: false,
        chatbotConfig: chatbotConfig ? JSON.stringify(chatbotConfig) : undefined,
        type: 'CHATFLOW',
        workspaceId: WORKSPACE
    })
    return repo.save(repo.create(cf))
}

async function saveLead(ds, body) {
    // services/leads createLead: only these fields, createdDate left to the database's default
    const repo = ds.getRepository(Lead)
    const lead = new Lead()
    for (const f of ['chatflowid', 'name', 'email', 'phone']) if (body[f] !== undefined) lead[f] = body[f]
    lead.chatId = body.chatId
    return repo.save(repo.create(lead))
}

// One turn as buildChatflow writes it: the visitor's row stamped when the request started
// (userMessageDateTime) but inserted after the answer, then the bot's row stamped when saved.
async function turn(ds, { chatflowid, chatId, chatType, asked, askedAt, answer, answeredAt, leadEmail, usedTools, sourceDocuments }) {
    const common = { chatflowid, chatType, chatId, memoryType: 'Buffer Memory', sessionId: chatId }
    await utilAddChatMessage({ role: 'userMessage', content: asked, ...common, createdDate: askedAt, fileUploads: undefined, leadEmail }, ds)
    const api = { role: 'apiMessage', content: answer, ...common, createdDate: answeredAt }
    if (sourceDocuments) api.sourceDocuments = JSON.stringify(sourceDocuments)
    if (usedTools) api.usedTools = JSON.stringify(usedTools)
    await utilAddChatMessage(api, ds)
}

const at = (base, seconds, ms) => {
    const d = new Date(base.getTime() + seconds * 1000)
    d.setMilliseconds(ms)
    return d
}

async function main() {
    await init()
    const ds = getDataSource()
    await ds.initialize()
    await ds.runMigrations({ transaction: 'each' })

    // The owner's account as the first sign-up makes it (user, organization, workspace): only so that
    // chat_flow.workspaceId has the workspace its foreign key asks for.
    await ds.getRepository(User).save({ id: USER, name: 'Owner', email: 'owner@example.com', status: 'active', createdBy: USER, updatedBy: USER })
    await ds.getRepository(Organization).save({ id: ORGANIZATION, name: 'Default Organization', createdBy: USER, updatedBy: USER })
    await ds.getRepository(Workspace).save({ id: WORKSPACE, name: 'Default Workspace', organizationId: ORGANIZATION, createdBy: USER, updatedBy: USER })

    await saveChatflow(ds, LEAD_BOT, 'Lead Bot', {
        leads: {
            status: true,
            title: 'Let us know where we can reach you:',
            name: true,
            email: true,
            phone: false,
            successMessage: 'Thank you! Ask me anything about our plans.'
        }
    })
    await saveChatflow(ds, SUPPORT_BOT, 'Support Bot', null)
    await saveChatflow(ds, OLD_BOT, 'Old Bot', { leads: { status: true, name: true, email: true, phone: true } })

    // The old bot's visitor: a lead and one turn, then the chatflow is deleted.
    await saveLead(ds, { chatflowid: OLD_BOT, chatId: CHAT.orphan, name: 'Olga Old', email: 'olga@example.org', phone: '+44 20 7946 0000' })

    // Day 1: the lead form first (the widget blocks typing until it is filled; phone not asked: '' as the widget sends)
    const lead = await saveLead(ds, { chatflowid: LEAD_BOT, chatId: CHAT.leadDay1, name: 'Jane Doe', email: 'jane@example.com', phone: '' })
    const saved = await ds.getRepository(Lead).findOneBy({ id: lead.id })
    // the rest of the story is timed from the lead's own createdDate (database default: now)
    const t0 = new Date(saved.createdDate.getTime())

    await turn(ds, {
        chatflowid: OLD_BOT, chatId: CHAT.orphan, chatType: 'EXTERNAL',
        asked: 'Do you ship to the UK?', askedAt: at(t0, -50, 250),
        answer: 'Yes, we ship to the **UK** in 3-5 working days.', answeredAt: at(t0, -47, 900)
    })

    await turn(ds, {
        chatflowid: LEAD_BOT, chatId: CHAT.leadDay1, chatType: 'EXTERNAL', leadEmail: 'jane@example.com',
        asked: 'Hi! How much does the Pro plan cost?', askedAt: at(t0, 12, 345),
        answer:
            'Here are our plans:\n\n| Plan | Price | Seats |\n|------|------:|------:|\n| Starter | $9/mo | 1 |\n| **Pro** | $29/mo | 5 |\n| Team | $99/mo | 25 |\n\nThe **Pro** plan includes:\n\n- unlimited projects\n- priority support\n- [API access](https://example.com/docs/api)\n\nWould you like a trial?',
        answeredAt: at(t0, 19, 812)
    })
    await turn(ds, {
        chatflowid: LEAD_BOT, chatId: CHAT.leadDay1, chatType: 'EXTERNAL', leadEmail: 'jane@example.com',
        asked: 'Is there a discount if I pay yearly?', askedAt: at(t0, 64, 0), // a whole second: .000 / no fraction
        answer: 'Yes: paying **yearly** saves 20%, so Pro is `$278.40/year` instead of $348.\n\n> Offer valid for new customers.',
        answeredAt: at(t0, 70, 4)
    })

    // Day 2: the same visitor after "clear chat": a new chatId, leadEmail kept, no lead row
    const t1 = at(t0, 24 * 3600 + 1800, 0)
    await turn(ds, {
        chatflowid: LEAD_BOT, chatId: CHAT.leadDay2, chatType: 'EXTERNAL', leadEmail: 'jane@example.com',
        asked: "Hi again, I'd like to start the Pro trial. What do I need?", askedAt: at(t1, 3, 120),
        answer: 'Great choice! To start your trial:\n\n1. Go to **Settings → Billing**\n2. Pick *Pro*\n3. Confirm your email\n\nNo card needed for 14 days.',
        answeredAt: at(t1, 9, 660)
    })

    // Support Bot: an agent answer that called a tool
    const t2 = at(t0, 2 * 3600, 0)
    await turn(ds, {
        chatflowid: SUPPORT_BOT, chatId: CHAT.supportTool, chatType: 'EXTERNAL',
        asked: 'Where is my order #1042?', askedAt: at(t2, 0, 501),
        answer: 'Your order **#1042** shipped yesterday with DHL, tracking `JD0146000012345`. It should arrive on Thursday.',
        answeredAt: at(t2, 14, 77),
        usedTools: [
            {
                tool: 'order_lookup',
                toolInput: { orderId: '1042' },
                toolOutput: '{"status":"shipped","carrier":"DHL","tracking":"JD0146000012345","eta":"Thursday"}'
            }
        ]
    })
    await turn(ds, {
        chatflowid: SUPPORT_BOT, chatId: CHAT.supportTool, chatType: 'EXTERNAL',
        asked: 'Thanks, that is all.', askedAt: at(t2, 40, 999),
        answer: "You're welcome! Have a nice day.", answeredAt: at(t2, 42, 10)
    })

    // The builder's own test chat (the chat window in the Flowise UI): INTERNAL
    const t3 = at(t0, -3600, 0)
    await turn(ds, {
        chatflowid: SUPPORT_BOT, chatId: CHAT.internal, chatType: 'INTERNAL',
        asked: 'test', askedAt: at(t3, 0, 42), answer: 'Hello! How can I help you today?', answeredAt: at(t3, 2, 420)
    })

    // Delete Old Bot as deleteChatflow does: the chatflow, then its messages; the lead table is not touched.
    await ds.getRepository(ChatFlow).delete({ id: OLD_BOT })
    await ds.getRepository(ChatMessage).delete({ chatflowid: OLD_BOT })
    // A prediction that started before the delete finishes after it: utilAddChatMessage does not look the
    // chatflow up again, so its two rows are written for a chatflow that no longer exists.
    await turn(ds, {
        chatflowid: OLD_BOT, chatId: CHAT.inFlight, chatType: 'EXTERNAL',
        asked: 'Can I return an item?', askedAt: at(t0, -20, 333), // asked before the delete
        answer: 'Yes, within **30 days**.', answeredAt: at(t0, 2, 21) // answered after it
    })

    console.log('lead createdDate as read back:', saved.createdDate, 'process TZ:', Intl.DateTimeFormat().resolvedOptions().timeZone)
    await ds.destroy()
}

main().catch((e) => {
    console.error(e)
    process.exit(1)
})
