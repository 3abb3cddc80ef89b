// Which clock stamps createdDate, seen from Flowise's own code (run by hand, not in CI).
// Writes one lead (as services/leads createLead: createdDate left to the database default) and one message
// (as utilAddChatMessage: createdDate = new Date() in the Flowise process) at the same instant, then prints
// both as stored. Run it with a process TZ and a database zone that differ, e.g. for PostgreSQL:
//   ALTER DATABASE flowise_tz SET timezone = 'America/New_York';
//   TZ=Europe/Berlin DATABASE_TYPE=postgres DATABASE_NAME=flowise_tz ... node tests/flowise/tz_check.js
// and for SQLite: TZ=Europe/Berlin DATABASE_TYPE=sqlite DATABASE_PATH=/empty/dir node tests/flowise/tz_check.js
'use strict'
const path = require('path')
const dist = (p) => require(path.join(process.env.FLOWISE_DIR, 'dist', p))
const { init, getDataSource } = dist('DataSource')
const { Lead } = dist('database/entities/Lead')
const { utilAddChatMessage } = dist('utils/addChatMesage')

async function main() {
    await init()
    const ds = getDataSource()
    await ds.initialize()
    await ds.runMigrations({ transaction: 'each' })
    const chatflowid = '7f0c2e1a-5b7d-4c1e-9a3f-2d6b8e4f1aff'
    const chatId = 'c0a80001-ffff-4aff-8aff-0000000000ff'
    const repo = ds.getRepository(Lead)
    await repo.save(repo.create({ chatflowid, chatId, name: 'Tz', email: 'tz@example.com', phone: '' }))
    await utilAddChatMessage({ role: 'userMessage', content: 'hi', chatflowid, chatType: 'EXTERNAL', chatId, sessionId: chatId }, ds)
    const raw = await ds.query(
        ds.options.type === 'postgres'
            ? `SELECT 'lead' AS t, "createdDate"::text AS stored FROM lead UNION ALL SELECT 'message', "createdDate"::text FROM chat_message`
            : `SELECT 'lead' AS t, "createdDate" AS stored FROM lead UNION ALL SELECT 'message', "createdDate" FROM chat_message`
    )
    console.log('now (UTC):', new Date().toISOString(), 'process TZ:', process.env.TZ)
    console.log(raw)
    await ds.destroy()
}
main().catch((e) => {
    console.error(e)
    process.exit(1)
})
